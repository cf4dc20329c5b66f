"""The one place that turns Hydra config nodes into typed stage configs, validates them, and derives each
stage's identity key (what its finished artifact depends on) — all before any model is loaded."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import PurePosixPath

from omegaconf import DictConfig, OmegaConf

from pipeline.runner import RunnerConfig
from pipeline.runner import runner_configs as _runner_configs
from stages.bootstrap import BootstrapConfig
from stages.compare import PairwiseJudgeConfig
from stages.evaluate import EvalConfig
from stages.generate import GenerateConfig
from stages.judge import JudgeConfig
from stages.meta_judge import MetaJudgeConfig
from stages.pairs import PairsConfig
from stages.self_instruct import PromptsConfig
from stages.tasks import TaskConfig
from stages.thoughts import ThoughtConfig
from stages.train import PROJECT_KEYS, TrainConfig
from stages.verify import VerifyConfig

GROUPS = ("task", "prompts", "thought", "generate", "judge", "meta_judge", "pairs", "train", "eval", "bootstrap")


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
    prompts: PromptsConfig
    thought: ThoughtConfig  # TPO's thought prompt and markers (template "": answer directly)
    generate: GenerateConfig
    judge: VerifyConfig | JudgeConfig | PairwiseJudgeConfig  # scores the training samples (judge.kind)
    verify: VerifyConfig  # the task's answer checker, used by the evaluation (= judge when kind is verify)
    meta_judge: MetaJudgeConfig | None  # Meta-Rewarding's judge of judgments (None: off this iteration)
    pairs: PairsConfig
    train: TrainConfig
    eval: EvalConfig
    bootstrap: BootstrapConfig | None  # Self-Rewarding's seed fine-tuning before iteration 1 (None: off)

    @property
    def llm_judge(self) -> JudgeConfig | None:
        """The pointwise LLM judge (judge.kind=llm), or None."""
        return self.judge if isinstance(self.judge, JudgeConfig) else None

    @property
    def model_judge(self) -> JudgeConfig | PairwiseJudgeConfig | None:
        """A judge that is a model (pointwise or pairwise), or None for the verifiable checker."""
        return None if isinstance(self.judge, VerifyConfig) else self.judge


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
        if group not in values or group == "bootstrap":
            raise ConfigError(f"schedule.{group}: not a per-iteration stage group {list(GROUPS[:-1])}")
        if field not in values[group] and group != "train":  # train also takes any TRL field
            raise ConfigError(f"schedule: {group} has no field {field!r}")
        values[group][field] = per_iter[min(max(iteration, 1), len(per_iter)) - 1]


def stage_configs(cfg: DictConfig, iteration: int = 1) -> StageConfigs:
    """Typed, validated stage configs for `iteration` (schedule applied). Raises ConfigError naming the key."""
    values = {g: _node(cfg, g) if g in cfg else {} for g in GROUPS}
    _apply_schedule(values, scheduled(cfg), iteration)
    judge = dict(values["judge"])
    kind = judge.pop("kind", "verify")
    if kind == "verify":
        verify = judge_cfg = _make(VerifyConfig, judge, "judge")
    elif kind == "llm":
        verify, judge_cfg = VerifyConfig(), _make(JudgeConfig, {**judge, "kind": "llm"}, "judge")
    elif kind == "pairwise":
        verify, judge_cfg = VerifyConfig(), _make(PairwiseJudgeConfig, {**judge, "kind": "pairwise"}, "judge")
    else:
        raise ConfigError(f"judge.kind must be 'verify', 'llm' or 'pairwise', got {kind!r}")
    meta = dict(values["meta_judge"])
    meta_cfg = _make(MetaJudgeConfig, meta, "meta_judge") if meta.pop("enabled", False) else None
    if meta_cfg and not isinstance(judge_cfg, JudgeConfig):
        raise ConfigError("meta_judge needs a pointwise LLM judge (judge=llm): it compares that judge's judgments")
    eval_cfg = _make(EvalConfig, values["eval"], "eval")
    boot = dict(values["bootstrap"])
    boot_train = boot.pop("train", {}) or {}
    bootstrap = None
    if boot.pop("enabled", False):
        if judge_cfg is verify and boot.get("eft", True) and not eval_cfg.win_rate:
            raise ConfigError("bootstrap.eft needs a model judge (judge=llm or judge=pairwise) or eval.win_rate: "
                              "its judging examples use their templates")
        bootstrap = _make(BootstrapConfig, {**boot, "train": _make(
            TrainConfig, {"trainer": "sft", **_train_project(boot_train), "args": boot_train}, "bootstrap.train")}, "bootstrap")
    return StageConfigs(
        task=_make(TaskConfig, values["task"], "task"),
        prompts=_make(PromptsConfig, values["prompts"], "prompts"),
        thought=_make(ThoughtConfig, values["thought"], "thought"),
        generate=_make(GenerateConfig, values["generate"], "generate"),
        judge=judge_cfg,
        verify=verify,
        meta_judge=meta_cfg,
        pairs=_make(PairsConfig, values["pairs"], "pairs"),
        train=_make(TrainConfig, {**_train_project(values["train"]), "args": values["train"]}, "train"),
        eval=eval_cfg,
        bootstrap=bootstrap,
    )


def bootstrap_pairwise_template(s: StageConfigs) -> str:
    """The pairwise template the bootstrap teaches: the pairwise judge's, else the evaluation's win-rate one."""
    if isinstance(s.judge, PairwiseJudgeConfig):
        return s.judge.template
    return s.eval.pairwise_template if s.eval.win_rate else ""


def _train_project(train: dict) -> dict:
    """Pop the project's own train keys out of `train`, leaving the TRL fields."""
    return {k: train.pop(k) for k in list(train) if k in PROJECT_KEYS}


def runner_configs(cfg: DictConfig) -> dict[str, RunnerConfig]:
    """Where each stage runs (the `runner` node), checked."""
    try:
        return _runner_configs(_node(cfg, "runner") if "runner" in cfg else {})
    except ValueError as e:
        raise ConfigError(str(e)) from None


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
    runner_configs(cfg)


# --------------------------------------------------------------------------- stage identity keys


def _hash(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def as_dict(obj) -> dict:
    return dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else dict(obj)


# fields added after runs already existed: left out of stage keys while at their defaults, so those runs keep their keys
LATER_FIELDS = {"quantize": None, "vllm": {}}


def identity(obj) -> dict:
    return {k: v for k, v in as_dict(obj).items() if not (k in LATER_FIELDS and v == LATER_FIELDS[k])}


@dataclass
class PlannedStage:
    key: str  # hash of the stage's config and of the keys of everything it reads
    config: dict  # what is recorded in the marker (to explain a mismatch)
    deps: list[str]  # names of the stages it reads, as "iter_XX/name"


def plan(cfg: DictConfig) -> dict[tuple[int, str], PlannedStage]:
    """Key of every stage of every iteration, derived from config alone. A finished stage whose marker holds
    another key is stale: its own config, or the config of something upstream, changed."""
    model = {"name_or_path": cfg.model.name_or_path}
    train_procs = runner_configs(cfg).get("train", RunnerConfig()).nproc
    procs = {"processes": train_procs} if train_procs > 1 else {}  # the global batch grows with the processes
    out: dict[tuple[int, str], PlannedStage] = {}

    def add(t, name, config, deps):
        keys = [out[d].key for d in deps]
        out[(t, name)] = PlannedStage(_hash(name, config, keys), config, [f"iter_{d[0]:02d}/{d[1]}" for d in deps])

    s0 = stage_configs(cfg, 1)
    test_identity = {k: v for k, v in as_dict(s0.task).items() if k != "prompts_per_iteration"}

    def who(spec: str, current: int) -> tuple[dict, list]:
        """A model named in config: its identity and the stage it depends on (current / initial / a path)."""
        if spec == "current":
            return {"model": "current"}, [(current, "model")]
        if spec == "initial":
            return {"model": "initial"}, [(0, "model")]
        return {"model": spec}, []

    def thought(s: StageConfigs) -> dict:  # only when thoughts are on, so runs without them keep their keys
        return {"thought": as_dict(s.thought)} if s.thought.enabled else {}

    def eval_stage(t: int, s: StageConfigs) -> None:
        config = {"eval": as_dict(s.eval), "judge": as_dict(s.verify), "task": test_identity, **thought(s)}
        deps = [(t, "model")]
        if s.eval.win_rate and t > 0:
            ident, extra = who(s.eval.win_rate_judge, t)
            config["win_rate_judge"], deps = ident, deps + [(0, "eval")] + extra
        if s.eval.judge_quality and s.llm_judge:
            ident, extra = who(s.llm_judge.model, t)
            config["llm_judge"], deps = {**as_dict(s.llm_judge), **ident}, deps + extra
        add(t, "eval", config, list(dict.fromkeys(deps)))

    if s0.bootstrap:
        add(0, "bootstrap", {"bootstrap": {k: v for k, v in as_dict(s0.bootstrap).items() if k != "train"},
                             "judge_template": s0.llm_judge.template if s0.llm_judge else None,
                             "pairwise_template": bootstrap_pairwise_template(s0) or None, **thought(s0)}, [])
        add(0, "model", {"model": model, "train": identity(s0.bootstrap.train), **procs}, [(0, "bootstrap")])
    else:
        add(0, "model", {"model": model}, [])
    eval_stage(0, s0)
    for t in range(1, cfg.iterations + 1):
        s = stage_configs(cfg, t)
        if s.prompts.source == "task":
            add(t, "prompts", {"task": as_dict(s.task), "seed": cfg.seed, "iteration": t}, [])
        else:
            ident, deps = who(s.prompts.model, t - 1)
            previous = [(t - 1, "prompts")] if t > 1 and s.prompts.generated_shots else []
            add(t, "prompts", {"prompts": {**as_dict(s.prompts), **ident}, "iteration": t}, deps + previous)
        add(t, "generations", {"generate": identity(s.generate), **thought(s)}, [(t, "prompts"), (t - 1, "model")])
        ident, deps = who(s.model_judge.model, t - 1) if s.model_judge else ({}, [])
        add(t, "judgments", {"judge": {**as_dict(s.judge), **ident}}, list(dict.fromkeys([(t, "generations")] + deps)))
        pair_deps = [(t, "judgments")]
        pair_config = {"pairs": as_dict(s.pairs), **thought(s)}
        if s.meta_judge:
            ident, deps = who(s.meta_judge.model, t - 1)
            meta = as_dict(s.meta_judge)
            pair_config["judge_pairs"] = {k: meta.pop(k) for k in ("max_share", "max_chosen_chars")}  # used by pairs
            add(t, "meta_judgments", {"meta_judge": {**meta, **ident}}, list(dict.fromkeys([(t, "judgments")] + deps)))
            pair_deps.append((t, "meta_judgments"))
        add(t, "pairs", pair_config, pair_deps)
        ref = [(0, "model")] if s.train.reference == "initial" else []
        add(t, "model", {"train": identity(s.train), **procs}, [(t, "pairs"), (t - 1, "model")] + ref)
        eval_stage(t, s)
    return out
