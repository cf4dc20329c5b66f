"""The one place that turns Hydra config nodes into typed stage configs and validates them — before any model
is loaded. The stage table, the resume plan and the run-level checks are in pipeline/graph.py."""

from __future__ import annotations

import dataclasses
import os
import sys
import typing
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError, MissingMandatoryValue

from pipeline.models import SCHEMES
from stages import is_integer, is_number
from stages.behaviors import BehaviorsConfig
from stages.bootstrap import BootstrapConfig
from stages.compare import PairwiseJudgeConfig
from stages.evaluate import EvalConfig
from stages.generate import GenerateConfig
from stages.hints import CurriculumConfig
from stages.judge import JudgeConfig
from stages.meta_judge import MetaJudgeConfig
from stages.pairs import PairsConfig
from stages.priming import PrimingConfig
from stages.refine import RefineConfig
from stages.self_instruct import PromptsConfig
from stages.tasks import TaskConfig
from stages.thoughts import ThoughtConfig
from stages.train import PROJECT_KEYS, TrainConfig
from stages.verify import VerifyConfig

GROUPS = ("task", "prompts", "curriculum", "thought", "generate", "judge", "meta_judge", "refine", "pairs", "train",
          "eval", "behaviors", "bootstrap")


def _basename(value: str) -> str:
    """Short name of a model/data source: 'embedded:smollm2-135m' -> 'smollm2-135m', 'org/M-1B' -> 'M-1B',
    'data/x.jsonl' -> 'x'."""
    value = str(value)
    for scheme in SCHEMES:
        value = value[len(scheme):] if value.startswith(scheme) else value
    name = PurePosixPath(value.rstrip("/")).name
    for suffix in (".jsonl", ".json", ".parquet", ".csv"):
        name = name[: -len(suffix)] if name.endswith(suffix) else name
    return name or "model"


def _folder_name(value: str) -> str:
    """One folder name from a sweep job's overrides: a '/' in a value (a path, an org/model id) would otherwise
    make Hydra nest the job several folders deep, where neither the report nor a rerun finds it by name."""
    return str(value).replace("/", "%2F")


def _run_dir(output_dir, run_name) -> str:
    """hydra.run.dir / hydra.sweep.dir: `paths.output_dir`/`run_name`, refused before Hydra makes the folder when
    either is empty (the run would go into the folder of all runs, or under /) or the folder cannot be made. Hydra
    resolves this before our code runs and its exception formatting fails on a resolver's error (an AssertionError
    and a long traceback), so this prints the one line and exits itself."""
    problem = next((f"{key} is empty: give it a value, or leave it out for the default"
                    for key, value in (("paths.output_dir", output_dir), ("run_name", run_name))
                    if value is None or not str(value).strip()), None)
    path = Path(str(output_dir)).expanduser() / str(run_name)
    up = next(p for p in (path, *path.parents) if p.exists())  # the deepest folder that exists
    if problem is None and not (up.is_dir() and os.access(up, os.W_OK | os.X_OK)):
        problem = f"paths.output_dir: cannot make {path} ({up} is {'not writable' if up.is_dir() else 'not a folder'})"
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(2)
    return str(path)


for _name, _fn in (("basename", _basename), ("folder_name", _folder_name), ("run_dir", _run_dir)):
    if not OmegaConf.has_resolver(_name):
        OmegaConf.register_new_resolver(_name, _fn)


def command_line_error(e: Exception) -> str:
    """Hydra's error about the command line itself (an option a group lacks, a key the config lacks, the override
    grammar, an interpolation that does not resolve) as one line naming the override or key: Hydra prints them over
    several lines, with its config search path and a group's options one per line. For a key the config lacks it names
    the closest keys there are (at the top level, the config groups too: `methd=irpo` means `method=irpo`), and only
    without one Hydra's hint to append it with `+`. Used by `python -m pipeline` and benchmarks/bench_iteration.py."""
    import difflib

    import conf
    from hydra.errors import OverrideParseException
    from omegaconf.errors import OmegaConfBaseException

    if isinstance(e, OverrideParseException):  # "no viable alternative at input '[1'\nSee https://... for details"
        first, _, rest = e.message.partition("\n")
        return f"{e.override}: {first}" + (f" ({rest.strip()[0].lower()}{rest.strip()[1:]})" if rest.strip() else "")
    if isinstance(e, OmegaConfBaseException):  # hydra.run.dir=${nope}: "Interpolation key 'nope' not found"
        return f"{e.full_key}: {str(e).splitlines()[0]}" if getattr(e, "full_key", None) else str(e).splitlines()[0]
    lines = [line.strip() for line in str(e).split("Config search path:")[0].splitlines() if line.strip()]
    if len(lines) > 1 and lines[1].startswith("Available options"):  # a group's option that does not exist
        lines = [lines[0], f"(options: {', '.join(lines[2:])})"]
    cause, appended = e.__cause__, lines[-1].partition("To append to your config use +")[2]
    parent, key = getattr(cause, "parent_node", None), getattr(cause, "key", None)
    if appended and isinstance(parent, DictConfig) and isinstance(key, str):  # a key the config lacks (not in struct)
        full = str(getattr(cause, "full_key", key))
        prefix = full[:len(full) - len(key)]
        names = [str(k) for k in parent.keys()]
        if not prefix:  # the top level: config groups are chosen there too
            names += [p.name for p in Path(conf.__file__).parent.iterdir() if p.is_dir() and p.name[0] != "_"]
        close = difflib.get_close_matches(key, sorted(set(names)), n=3, cutoff=0.6)
        return f"{appended}: the config has no {full} " + (
            f"(did you mean {' or '.join(prefix + c for c in close)}?)" if close else f"(to add it: +{appended})")
    if isinstance(cause, OmegaConfBaseException):  # Hydra prints the cause's message below its own
        lines.append(f"({str(cause).splitlines()[0]})")
    return " ".join(lines)


class ConfigError(ValueError):
    """A bad configuration value, named by its key."""


class UnknownFieldsError(ConfigError):
    def __init__(self, message: str, group: str, fields: list[str]):
        super().__init__(message)
        self.group, self.fields = group, fields


def _node(cfg: DictConfig, key: str) -> dict:
    """A config group as plain values; a value left ??? or an interpolation that does not resolve (judge=pairwise
    reads ${eval.pairwise_template}, which eval=open sets) is one line naming the key."""
    try:
        return OmegaConf.to_container(cfg[key], resolve=True, throw_on_missing=True)  # type: ignore[return-value]
    except MissingMandatoryValue as e:
        raise ConfigError(f"{e.full_key} has no value: set it ({e.full_key}=...)") from None
    except InterpolationResolutionError as e:
        first = str(e.msg).splitlines()[0]
        raise ConfigError(f"{e.full_key}: {first}: set {e.full_key} or what it refers to") from None


def _make(cls, values: dict, group: str):
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        engine = [k for k in unknown if k in ("dtype", "device", "backend", "vllm")]
        hint = (f" ({', '.join(engine)}: every model call uses the run's one engine, set generate.{engine[0]})"
                if engine and group != "generate" else "")
        raise UnknownFieldsError(f"{group}: unknown field(s) {unknown}; valid: {sorted(names)}{hint}", group, unknown)
    hints = typing.get_type_hints(cls)
    for name, value in values.items():
        kind = _SCALARS.get(hints[name])
        if kind and value is not None and not kind[0](value):  # null: the dataclass's own checks say
            quote = (f""" (a number: quote it for Hydra, "{group}.{name}='{value}'")"""
                     if kind is _STR and is_number(value) else "")
            raise ConfigError(f"{group}.{name} must be {kind[1]}, got {value!r}{quote}")
    missing = [f.name for f in dataclasses.fields(cls) if f.init and f.name not in values
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:  # a group file of one's own that leaves out a field without a default (was the dataclass's TypeError)
        raise ConfigError(f"{group}: {', '.join(f'{group}.{m}' for m in missing)} has no value: set it, or choose a "
                          f"{group} group that does")
    try:
        return cls(**values)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{group}: {e}") from e


# a stage field's scalar type: what its value must be (a string where a number belongs would otherwise fail, or
# not, deep inside a stage, e.g. generate.seed=abc in the first sampling batch)
_INT = (is_integer, "an integer")
_FLOAT = (is_number, "a number")
_STR = (lambda v: isinstance(v, str), "a string")
_SCALARS = {int: _INT, int | None: _INT, float: _FLOAT, float | None: _FLOAT, str: _STR, str | None: _STR,
            bool: (lambda v: isinstance(v, bool), "true or false")}


@dataclass
class StageConfigs:
    task: TaskConfig
    prompts: PromptsConfig
    thought: ThoughtConfig  # TPO's thought prompt and markers (template "": answer directly)
    generate: GenerateConfig
    judge: VerifyConfig | JudgeConfig | PairwiseJudgeConfig  # scores the training samples (judge.kind)
    verify: VerifyConfig  # the task's checker, used by the evaluation (= judge when kind is verify)
    meta_judge: MetaJudgeConfig | None  # Meta-Rewarding's judge of judgments (None: off this iteration)
    refine: RefineConfig  # feedback rounds after the first attempts (rounds 0: none) and their pairs
    pairs: PairsConfig
    train: TrainConfig
    eval: EvalConfig
    bootstrap: BootstrapConfig | PrimingConfig | None  # fine-tuning before iteration 1: Self-Rewarding's seed data
    # (kind "seed") or Countdown priming traces (kind "priming"); None: off
    curriculum: CurriculumConfig | None = None  # SEELE's adaptive hints (None: the bare problems)
    behaviors: BehaviorsConfig | None = None  # the behavior analysis of every iteration's samples (None: off)

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
        if key == "judge.kind" and len({str(v) for v in per_iter}) > 1:  # was "unknown field(s)" of the other kind
            raise ConfigError("schedule.judge.kind: judge.kind picks the judge group (judge=verify|llm|pairwise), whose "
                              "fields differ, so it cannot change between iterations: run the later iterations as a "
                              "run of their own, from the last model (model.name_or_path=<run>/iter_NN/model)")
        values[group][field] = per_iter[min(max(iteration, 1), len(per_iter)) - 1]


def stage_configs(cfg: DictConfig, iteration: int = 1) -> StageConfigs:
    """Typed, validated stage configs for `iteration` (schedule applied). Raises ConfigError naming the key."""
    try:
        return _stage_configs(cfg, iteration)
    except UnknownFieldsError as e:
        raise ConfigError(f"{e}{_set_by_method(cfg, e.group, e.fields)}") from None


def _set_by_method(cfg: DictConfig, group: str, fields: list[str]) -> str:
    """Where unknown fields came from when the method preset sets them for its own choice of the group
    (method=meta_rewarding's judge.num_judgments under judge=pairwise): the preset's name and how to drop them."""
    import conf

    name = OmegaConf.select(cfg, "method_name", default=None, throw_on_missing=False)
    path = Path(conf.__file__).parent / "method" / f"{name}.yaml"
    if not isinstance(name, str) or not path.is_file():
        return ""
    preset = OmegaConf.load(path)
    keys = [f"{group}.{f}" for f in fields if OmegaConf.select(preset, f"{group}.{f}", default=None) is not None]
    if not keys:
        return ""
    return f" (method={name} sets {', '.join(keys)}: drop {'it' if len(keys) == 1 else 'them'} with " \
           f"{' '.join('~' + k for k in keys)})"


def _stage_configs(cfg: DictConfig, iteration: int) -> StageConfigs:
    values = {g: _node(cfg, g) if g in cfg else {} for g in GROUPS}
    _apply_schedule(values, scheduled(cfg), iteration)
    gen = _make(GenerateConfig, values["generate"], "generate")
    engine = gen.engine  # every model call of the run uses the generate group's engine
    task = _make(TaskConfig, values["task"], "task")
    judge = dict(values["judge"])
    kind = judge.pop("kind", "verify")
    if kind == "verify":
        verify = judge_cfg = _make(VerifyConfig, {**judge, "task": task}, "judge")
    elif kind == "llm":
        verify, judge_cfg = VerifyConfig(task=task), _make(JudgeConfig, {**judge, "kind": "llm", "engine": engine}, "judge")
    elif kind == "pairwise":
        verify = VerifyConfig(task=task)
        judge_cfg = _make(PairwiseJudgeConfig, {**judge, "kind": "pairwise", "engine": engine}, "judge")
    else:
        raise ConfigError(f"judge.kind must be 'verify', 'llm' or 'pairwise', got {kind!r}")
    meta = dict(values["meta_judge"])
    if meta.get("enabled") and "template" not in meta:  # was "MetaJudgeConfig.__init__() missing ... 'template'"
        raise ConfigError("meta_judge.enabled is true (set here or by schedule.meta_judge.enabled, as method="
                          "meta_rewarding does) but meta_judge=none configures no meta-judge: use meta_judge=pairwise, "
                          "or drop the schedule with ~schedule.meta_judge")
    meta_cfg = _make(MetaJudgeConfig, {**meta, "engine": engine}, "meta_judge") if meta.pop("enabled", False) else None
    if meta_cfg and not isinstance(judge_cfg, JudgeConfig):
        raise ConfigError("meta_judge needs a pointwise LLM judge (judge=llm): it compares that judge's judgments")
    eval_cfg = _make(EvalConfig, {**values["eval"], "engine": engine}, "eval")
    bootstrap = _bootstrap(dict(values["bootstrap"]), task, judge_cfg is verify, eval_cfg)
    refine = _make(RefineConfig, values["refine"], "refine")
    thought = _make(ThoughtConfig, values["thought"], "thought")
    pairs = _make(PairsConfig, values["pairs"], "pairs")
    _check_refine(refine, eval_cfg, judge_cfg is verify, thought, pairs)
    prompts = _make(PromptsConfig, {**values["prompts"], "engine": engine}, "prompts")
    curriculum = _make(CurriculumConfig, values["curriculum"], "curriculum")
    curriculum = curriculum if curriculum.kind != "none" else None
    behaviors = dict(values["behaviors"])
    behaviors = _make(BehaviorsConfig, behaviors, "behaviors") if behaviors.pop("enabled", False) else None
    if curriculum:
        _check_curriculum(prompts, thought, judge_cfg is verify, refine, pairs)
    if prompts.source == "self_instruct" and judge_cfg is verify:
        raise ConfigError("prompts=self_instruct writes new instructions without gold answers: they need a model "
                          "judge (judge=llm or judge=pairwise), not judge=verify")
    train = _make(TrainConfig, {**_train_project(values["train"]), "args": values["train"]}, "train")
    if (train.trainer == "sft") != (pairs.rule == "correct"):  # was a KeyError after the iteration's sampling
        raise ConfigError(f"train.trainer={train.trainer} with pairs.rule={pairs.rule}: train=sft learns from the "
                          "examples pairs=correct makes (prompt/completion, STaR); train=dpo from preference pairs "
                          "(pairs=irpo or pairs=score)")
    if judge_cfg is not verify and pairs.rule != "score":  # was a TypeError on an unscored response in the pairs
        raise ConfigError(f"pairs.rule={pairs.rule} sorts answers by the task's checker (correct or not: judge=verify);"
                          f" judge={kind} scores responses: use pairs=score with it (as method=self_rewarding does)")
    return StageConfigs(
        task=task,
        prompts=prompts,
        thought=thought,
        generate=gen,
        judge=judge_cfg,
        verify=verify,
        meta_judge=meta_cfg,
        refine=refine,
        pairs=pairs,
        train=train,
        eval=eval_cfg,
        bootstrap=bootstrap,
        curriculum=curriculum,
        behaviors=behaviors,
    )


def _bootstrap(boot: dict, task: TaskConfig, verifiable: bool, eval_cfg: EvalConfig):
    """The fine-tuning before iteration 1: None (off), Self-Rewarding's seed data or Countdown priming."""
    boot_train = boot.pop("train", {}) or {}
    kind = boot.pop("kind", "seed")
    if not boot.pop("enabled", False):
        return None
    train = _make(TrainConfig, {"trainer": "sft", **_train_project(boot_train), "args": boot_train}, "bootstrap.train")
    if kind == "priming":
        if (task.source, task.dataset) != ("gym", "countdown"):
            raise ConfigError(f"bootstrap=priming writes Countdown traces: use task=gym task.dataset=countdown "
                              f"(got task {task.name})")
        priming = _make(PrimingConfig, {**boot, "train": train}, "bootstrap")
        return None if priming.condition == "unprimed" else priming
    if kind != "seed":
        raise ConfigError(f"bootstrap.kind must be 'seed' or 'priming', got {kind!r}")
    if verifiable and boot.get("eft", True) and not eval_cfg.win_rate:
        raise ConfigError("bootstrap.eft needs a model judge (judge=llm or judge=pairwise) or the eval measure "
                          "win_rate: its judging examples use their templates")
    return _make(BootstrapConfig, {**boot, "train": train}, "bootstrap")


def _check_curriculum(prompts: PromptsConfig, thought: ThoughtConfig, verifiable: bool, refine: RefineConfig,
                      pairs: PairsConfig) -> None:
    """SEELE's hints are the first steps of a task's reference solutions and its rounds are steered by the task's
    checker: it needs the task's own problems, judge=verify, IRPO's pairs and answers without thoughts."""
    for bad, why in ((prompts.source != "task", "prompts=task (its hints come from the task's reference solutions)"),
                     (not verifiable, "judge=verify (each round is steered by the task's checker)"),
                     (pairs.rule != "irpo", f"pairs=irpo (its pairs are made within one hint; got {pairs.rule})"),
                     (thought.enabled, "thought=none (the hint is the start of the answer)"),
                     (bool(refine.rounds), "refine=none (feedback rounds on hinted samples are not built)")):
        if bad:
            raise ConfigError(f"curriculum=seele needs {why}")


def _check_refine(refine: RefineConfig, eval_cfg: EvalConfig, verifiable: bool, thought: ThoughtConfig,
                  pairs: PairsConfig) -> None:
    """The refine cycle's feedback is the task checker's: it needs judge=verify, answers without thoughts and, for
    its pairs, the IRPO rule."""
    where = [k for k, on in (("refine.rounds", refine.rounds), ("eval.measures refine", eval_cfg.refine_rounds)) if on]
    if not where:
        return
    if thought.enabled:
        raise ConfigError(f"{where[0]}: the refine cycle revises whole answers; it does not run with thoughts "
                          "(thought=none)")
    if refine.rounds and not verifiable:
        raise ConfigError("refine.rounds: the feedback comes from the task's checker: use judge=verify")
    if refine.rounds and pairs.rule != "irpo":
        raise ConfigError(f"refine.rounds: its first-attempt and retry pairs are preference pairs: use pairs=irpo "
                          f"(got pairs.rule={pairs.rule})")


def bootstrap_pairwise_template(s: StageConfigs) -> str:
    """The pairwise template the bootstrap teaches: the pairwise judge's, else the evaluation's win-rate one."""
    if isinstance(s.judge, PairwiseJudgeConfig):
        return s.judge.template
    return s.eval.pairwise_template if s.eval.win_rate else ""


def _train_project(train: dict) -> dict:
    """Pop the project's own train keys out of `train`, leaving the TRL fields."""
    return {k: train.pop(k) for k in list(train) if k in PROJECT_KEYS}
