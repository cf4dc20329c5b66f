"""The one place that turns Hydra config nodes into typed stage configs, validates them, and derives each
stage's identity key (what its finished artifact depends on) — all before any model is loaded."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import PurePosixPath

from omegaconf import DictConfig, OmegaConf

from stages.evaluate import EvalConfig
from stages.generate import GenerateConfig
from stages.pairs import PairsConfig
from stages.tasks import TaskConfig
from stages.train import PROJECT_KEYS, TrainConfig
from stages.verify import VerifyConfig


def _basename(value: str) -> str:
    """Short name of a model/data source: 'embedded:smollm2-135m' -> 'smollm2-135m', 'org/M-1B' -> 'M-1B',
    'data/x.jsonl' -> 'x'."""
    value = str(value)
    for scheme in ("embedded:", "tiny:"):
        value = value[len(scheme):] if value.startswith(scheme) else value
    name = PurePosixPath(value.rstrip("/")).name
    for suffix in (".jsonl", ".json", ".parquet", ".csv"):
        name = name[: -len(suffix)] if name.endswith(suffix) else name
    return name or "model"


if not OmegaConf.has_resolver("basename"):
    OmegaConf.register_new_resolver("basename", _basename)


class ConfigError(ValueError):
    """A bad configuration value, named by its key."""


def _node(cfg: DictConfig, key: str) -> dict:
    return OmegaConf.to_container(cfg[key], resolve=True)  # type: ignore[return-value]


def _make(cls, values: dict, group: str):
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"{group}: unknown field(s) {unknown}; valid: {sorted(names)}")
    try:
        return cls(**values)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{group}: {e}") from e


@dataclass
class StageConfigs:
    task: TaskConfig
    generate: GenerateConfig
    verify: VerifyConfig
    pairs: PairsConfig
    train: TrainConfig
    eval: EvalConfig


def scheduled(cfg: DictConfig) -> dict[str, list]:
    """The schedule flattened to {"<group>.<field>": [value for iteration 1, 2, ...]}."""
    sched = _node(cfg, "schedule") if "schedule" in cfg else {}
    flat = {}
    for group, fields in (sched or {}).items():
        if not isinstance(fields, dict):
            raise ConfigError(f"schedule.{group}: give {{<field>: [value for iteration 1, 2, ...]}}")
        for field, per_iter in fields.items():
            if not isinstance(per_iter, list) or not per_iter:
                raise ConfigError(f"schedule.{group}.{field}: give a non-empty list of per-iteration values")
            flat[f"{group}.{field}"] = per_iter
    return flat


def _apply_schedule(values: dict[str, dict], flat: dict[str, list], iteration: int) -> None:
    for key, per_iter in flat.items():
        group, field = key.split(".", 1)
        target = "verify" if group == "judge" else group
        if target not in values:
            raise ConfigError(f"schedule.{group}: not a stage group (task, generate, judge, pairs, train, eval)")
        if field not in values[target] and group != "train":  # train also takes any TRL field
            raise ConfigError(f"schedule: {group} has no field {field!r}")
        values[target][field] = per_iter[min(max(iteration, 1), len(per_iter)) - 1]


def stage_configs(cfg: DictConfig, iteration: int = 1) -> StageConfigs:
    """Typed, validated stage configs for `iteration` (schedule applied). Raises ConfigError naming the key."""
    values = {g: _node(cfg, g) for g in ("task", "generate", "judge", "pairs", "train", "eval")}
    values["verify"] = values.pop("judge")
    _apply_schedule(values, scheduled(cfg), iteration)
    train = values["train"]
    project = {k: train.pop(k) for k in list(train) if k in PROJECT_KEYS}
    return StageConfigs(
        task=_make(TaskConfig, values["task"], "task"),
        generate=_make(GenerateConfig, values["generate"], "generate"),
        verify=_make(VerifyConfig, values["verify"], "judge"),
        pairs=_make(PairsConfig, values["pairs"], "pairs"),
        train=_make(TrainConfig, {**project, "args": train}, "train"),
        eval=_make(EvalConfig, values["eval"], "eval"),
    )


def validate(cfg: DictConfig, overrides: list[str] | tuple[str, ...] = ()) -> None:
    """Everything that can be checked without loading a model, for every iteration. `overrides` are the
    command-line overrides: one that sets a field the schedule also sets would be silently ignored, so it is
    refused."""
    sched = scheduled(cfg)
    for o in overrides:
        key = o.split("=", 1)[0].lstrip("+~")
        if key in sched:
            raise ConfigError(f"{key} is set per iteration by schedule.{key}={sched[key]}, which would win over "
                              f"{o}: change the schedule instead (schedule.{key}=[...]), or remove it "
                              f"(~schedule.{key})")
    if not isinstance(cfg.iterations, int) or cfg.iterations < 1:
        raise ConfigError(f"iterations must be an integer >= 1, got {cfg.iterations!r}")
    if cfg.on_change not in ("error", "recompute"):
        raise ConfigError(f"on_change must be 'error' or 'recompute', got {cfg.on_change!r}")
    if cfg.logger.kind not in ("wandb", "none"):
        raise ConfigError(f"logger.kind must be 'wandb' or 'none', got {cfg.logger.kind!r}")
    for t in range(1, cfg.iterations + 1):
        stage_configs(cfg, t)


# --------------------------------------------------------------------------- stage identity keys


def _hash(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def as_dict(obj) -> dict:
    return dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else dict(obj)


@dataclass
class PlannedStage:
    key: str  # hash of the stage's config and of the keys of everything it reads
    config: dict  # what is recorded in the marker (to explain a mismatch)
    deps: list[str]  # names of the stages it reads, as "iter_XX/name"


def plan(cfg: DictConfig) -> dict[tuple[int, str], PlannedStage]:
    """Key of every stage of every iteration, derived from config alone. A finished stage whose marker holds
    another key is stale: its own config, or the config of something upstream, changed."""
    model = {"name_or_path": cfg.model.name_or_path}
    out: dict[tuple[int, str], PlannedStage] = {}

    def add(t, name, config, deps):
        keys = [out[d].key for d in deps]
        out[(t, name)] = PlannedStage(_hash(name, config, keys), config, [f"iter_{d[0]:02d}/{d[1]}" for d in deps])

    s0 = stage_configs(cfg, 1)
    test_identity = {k: v for k, v in as_dict(s0.task).items() if k != "prompts_per_iteration"}
    add(0, "model", {"model": model}, [])
    add(0, "eval", {"eval": as_dict(s0.eval), "judge": as_dict(s0.verify), "task": test_identity}, [(0, "model")])
    for t in range(1, cfg.iterations + 1):
        s = stage_configs(cfg, t)
        add(t, "prompts", {"task": as_dict(s.task), "seed": cfg.seed, "iteration": t}, [])
        add(t, "generations", {"generate": as_dict(s.generate)}, [(t, "prompts"), (t - 1, "model")])
        add(t, "verdicts", {"judge": as_dict(s.verify)}, [(t, "generations")])
        add(t, "pairs", {"pairs": as_dict(s.pairs)}, [(t, "verdicts")])
        ref = [(0, "model")] if s.train.reference == "initial" else []
        add(t, "model", {"train": as_dict(s.train)}, [(t, "pairs"), (t - 1, "model")] + ref)
        add(t, "eval", {"eval": as_dict(s.eval), "judge": as_dict(s.verify), "task": test_identity}, [(t, "model")])
    return out
