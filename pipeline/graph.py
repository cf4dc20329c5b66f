"""The stage table: one declaration per stage — its name (= its artifact), its group (= its conf group, runner key
and metrics/W&B prefix), what it reads, which configs are its identity, and its function. Everything that needs
the stage graph reads this table: the loop (pipeline/loop.py) runs it in order, `plan` derives every stage's
identity key for resume, the runner accepts its groups, the report and inspect list its names. A table, not a
workflow engine: the rows are in the order of the algorithm and the loop runs them top to bottom.

Identity by construction: a stage's function sees only an `Inputs` view — the configs named in ``uses`` (whose
values are its identity) and the artifacts its ``reads`` declare (whose keys enter its key). Reading anything
else raises, so a finished artifact can never be reused after something it read has changed: every input is in
its identity chain (tests/test_graph.py runs every method preset to prove the declarations complete).

Adding a stage: one `Stage` row below and one function (here, calling the algorithm in stages/).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from omegaconf import DictConfig, OmegaConf

from pipeline.config import ConfigError, StageConfigs, bootstrap_pairwise_template, scheduled, stage_configs
from pipeline.runner import Runner, RunnerConfig, runner_configs as _runner_configs
from stages import is_integer

LAYOUT = 2  # the artifact layout: markers of an earlier layout are refused with a message (pipeline/store.py)
FIRST, LOOP, EVERY = "first", "loop", "every"  # iteration 0 only | iterations 1..N | every iteration
Read = tuple[int, str]  # (iteration, stage name)


@dataclass(frozen=True)
class Named:
    """A model a stage calls by a config field (`field`, whose value is `spec`): current, with M(`current`) as the
    current model; initial (M0); or a path / py:module:function, which reads no artifact and is checked before any
    model loads (pipeline/loop.py). Declared once, in a stage's reads, for both."""

    field: str
    spec: str
    current: int

    @property
    def read(self) -> Read | None:
        return _model_read(self.spec, self.current)


@dataclass(frozen=True)
class Stage:
    name: str  # its artifact: iter_XX/<name>.parquet (a folder for `model`) and <name>.done.json
    group: str  # its conf group, runner key and metrics / W&B prefix ("judge/accuracy")
    at: str  # FIRST | LOOP | EVERY
    uses: tuple[str, ...]  # StageConfigs attributes it reads: their values are its identity
    reads: Callable[[StageConfigs, int], list[Read | Named]]  # what it reads (the artifacts' keys enter its key)
    run: Callable  # (inputs) -> (records, stats); for `model`: (inputs, output_dir) -> stats
    when: Callable[[StageConfigs], bool] = lambda s: True  # runs at all this iteration?
    extra: tuple[str, ...] = ()  # run-level values in its identity: seed, iteration, processes
    process: bool = False  # calls a model: may run in its own process(es) (runner.<group>)

    def in_iteration(self, t: int) -> bool:
        """Whether iteration t has this row at all (`when` aside)."""
        return self.at == EVERY or (self.at == FIRST) == (t == 0)

    def runs_at(self, t: int, s: StageConfigs) -> bool:
        return self.in_iteration(t) and bool(self.when(s))

    def artifacts(self, s: StageConfigs, t: int) -> list[Read]:
        """The artifacts it reads in iteration t, in order: its reads with each named model resolved."""
        reads = [r.read if isinstance(r, Named) else r for r in self.reads(s, t)]
        return list(dict.fromkeys(r for r in reads if r is not None))

    def named_models(self, s: StageConfigs, t: int) -> list[Named]:
        """The models it calls in iteration t by a path or py:module:function rather than current / initial."""
        return [r for r in self.reads(s, t) if isinstance(r, Named) and r.read is None]


# --------------------------------------------------------------------------- what a stage function may read


class _View:
    """The stage configs a stage declared in `uses`; any other attribute is an undeclared read."""

    def __init__(self, s: StageConfigs, names: tuple[str, ...], stage: str):
        self._s, self._names, self._stage = s, names, stage

    def __getattr__(self, name: str):
        if name.startswith("_") or name not in self._names:
            raise UndeclaredRead(f"stage {self._stage} read config {name!r}, which is not in its `uses` "
                                 f"{list(self._names)}: add it there (pipeline/graph.py)")
        return getattr(self._s, name)


class UndeclaredRead(RuntimeError):
    """A stage function read a config or artifact its table row does not declare (a bug in the table)."""


@dataclass
class Inputs:
    run: "Run"
    stage: Stage
    t: int
    s: StageConfigs
    declared: list[Read] = field(default_factory=list)

    @property
    def cfg(self) -> _View:
        return _View(self.s, self.stage.uses, self.stage.name)

    def value(self, name: str):
        """A run-level value named in the stage's `extra` (seed, iteration, processes, base_model)."""
        if name not in self.stage.extra:
            raise UndeclaredRead(f"stage {self.stage.name} read {name!r}, not in its `extra` {list(self.stage.extra)}")
        return self.run.m0 if name == "base_model" else _extra(self.run.cfg, self.t, name)

    def _check(self, read: Read) -> None:
        if read not in self.declared:
            raise UndeclaredRead(f"stage iter_{self.t:02d}/{self.stage.name} read iter_{read[0]:02d}/{read[1]}, "
                                 f"which is not in its declared reads {self.declared} (pipeline/graph.py)")

    def table(self, name: str, t: int | None = None) -> list[dict]:
        read = (self.t if t is None else t, name)
        self._check(read)
        return self.run.store.read(*read)

    def model(self, spec: str = "current", current: int | None = None) -> str:
        """A model named in config: current (M(t-1) while iteration t runs; M(t) in its evaluation), initial (M0),
        embedded:/tiny: (made in the model cache once), or a path / hub id / py:module:function, as is."""
        from pipeline.models import SCHEMES, resolve_model

        read = _model_read(spec, self.t - 1 if current is None else current)
        if read is None:  # not an artifact of the run
            return resolve_model(spec, self.run.cfg.paths.cache_dir) if spec.startswith(SCHEMES) else spec
        self._check(read)
        return self.run.model_path(read[0])

    def scratch(self) -> Path:
        """A folder for the stage's work in progress (kept across a kill, removed once the stage finishes)."""
        return self.run.store.scratch(self.t, self.stage.name)

    def launch(self, fn: Callable, **kwargs):
        """fn(**kwargs) here or in worker processes, as runner.<group> says."""
        return self.run.launch(self.stage.group, self.t, fn, **kwargs)


def _model_read(spec: str, current: int) -> Read | None:
    return (current, "model") if spec == "current" else (0, "model") if spec == "initial" else None


def _extra(cfg: DictConfig, t: int, name: str):
    if name == "seed":
        return cfg.seed
    if name == "iteration":
        return t
    if name == "processes":  # the global batch grows with the training processes
        return runner_configs(cfg).get("train", RunnerConfig()).nproc
    if name == "base_model":  # the starting model by name (its resolved folder, when a stage reads it)
        return cfg.model.name_or_path
    raise KeyError(name)


# --------------------------------------------------------------------------- the stage functions


def _bootstrap(inp: Inputs):
    from stages.bootstrap import bootstrap_examples

    s = inp.cfg
    b = s.bootstrap
    return bootstrap_examples(s.judge.template if s.llm_judge else "", b.ift, b.eft, b.seed,
                              pairwise_template=bootstrap_pairwise_template(s), thought_cfg=s.thought), {}


def _priming(inp: Inputs):
    """Countdown traces that show the behaviors of `bootstrap.condition` (stages/priming.py), one per training
    problem, in the task's own prompt."""
    from stages.priming import priming_examples
    from stages.tasks import load_task
    from stages.tasks.gym import countdown_spec

    s = inp.cfg
    task = load_task(s.task)
    return priming_examples(task.train, lambda p: task.messages(p, s.task), countdown_spec, s.bootstrap)


def _bootstrap_model(inp: Inputs, out: Path) -> dict:
    from stages.train import train

    return inp.launch(train, model_path=inp.value("base_model"), records=inp.table("bootstrap"), output_dir=out,
                      cfg=inp.cfg.bootstrap.train, desc="bootstrap")


def _prompts(inp: Inputs):
    """The task's next training questions, or new instructions written by a model (self-instruct)."""
    s = inp.cfg
    if s.prompts.source == "self_instruct":
        from stages.self_instruct import self_instruct

        previous = [p["question"] for p in inp.table("prompts", inp.t - 1)] if _shots_read(s, inp.t) else []
        return inp.launch(self_instruct, model_path=inp.model(s.prompts.model), cfg=s.prompts, iteration=inp.t,
                          previous=previous, desc=f"iter {inp.t} self-instruct")
    from stages.tasks import load_task, select_prompts

    task = load_task(s.task)
    problems = select_prompts(task.train, inp.t, s.task.prompts_per_iteration, inp.value("seed"))
    return task.prompt_records(problems, s.task), {"train_split": len(task.train), "skipped_rows": task.skipped}


def _shots_read(s: StageConfigs, t: int) -> bool:
    return s.prompts.source == "self_instruct" and t > 1 and s.prompts.generated_shots > 0


def _generate(inp: Inputs):
    """N samples per prompt; with thoughts (TPO) asked with the thought prompt and split into thought/response."""
    from stages.generate import generate, merge_shards
    from stages.thoughts import split_records, wrap

    s = inp.cfg
    gens, stats = inp.launch(generate, merge=merge_shards, model_path=inp.model(), cfg=s.generate,
                             prompts=wrap(inp.table("prompts"), s.thought), desc=f"iter {inp.t} generate")
    if s.thought.enabled:
        gens, thought_stats = split_records(gens, s.thought)
        stats.update(thought_stats)
    return gens, stats


def _generate_hinted(inp: Inputs):
    """SEELE (curriculum=seele, stages/hints.py): m rounds of samples per problem, each with the hint the controller
    fits for it, checked by the task's checker; every round is kept in the stage's scratch folder (resume)."""
    from dataclasses import replace

    from stages.generate import generate, merge_shards
    from stages.hints import carried_rates, seele_rounds
    from stages.modeling import load_tokenizer
    from stages.tasks import load_task

    s, t = inp.cfg, inp.t
    model, task, cur = inp.model(), load_task(s.verify.task), s.curriculum

    def sample(prompts: list[dict], r: int) -> list[dict]:
        return inp.launch(generate, merge=merge_shards, model_path=model, prompts=prompts,
                          cfg=replace(s.generate, seed=s.generate.seed + 7919 * (r - 1)),
                          desc=f"iter {t} generate round {r}/{cur.rounds}")[0]

    def check(items: list[tuple[str, str]]) -> list:
        return task.check_all([(task.problem(pid), text) for pid, text in items], s.verify)

    return seele_rounds(inp.table("prompts"), carried_rates([inp.table("generations", k) for k in range(1, t)]), cur,
                        s.generate.num_samples, sample, check, inp.scratch(),
                        load_tokenizer(model) if cur.unit == "tokens" else None)


def _behaviors(inp: Inputs):
    """Verification, backtracking, subgoals and backward chaining in every judged sample (stages/behaviors.py):
    structural on Countdown, lexical everywhere; with `behaviors.classifier`, also a model's counts."""
    from stages.behaviors import analyse
    from stages.tasks import load_task
    from stages.tasks.gym import countdown_spec

    s = inp.cfg
    spec = lambda pid: None  # noqa: E731
    if (s.task.source, s.task.dataset) == ("gym", "countdown"):
        task = load_task(s.task)
        spec = lambda pid: countdown_spec(task.problem(pid))  # noqa: E731
    return analyse(inp.table("judgments"), spec, _classifier(inp) if s.behaviors.classifier else None, s.behaviors)


def _classifier(inp: Inputs) -> Callable[[list[dict]], list[str]]:
    """The behavior classifier's answers: the named model, greedy, with the run's engine."""
    from dataclasses import replace

    from stages.generate import generate, merge_shards

    s = inp.cfg
    model = inp.model(s.behaviors.classifier)
    greedy = replace(s.generate, num_samples=1, temperature=0.0, seed=0,
                     max_new_tokens=s.behaviors.classifier_max_new_tokens)

    def classify(asks: list[dict]) -> list[str]:
        out = inp.launch(generate, merge=merge_shards, model_path=model, prompts=asks, cfg=greedy,
                         desc=f"iter {inp.t} behavior classifier")[0]
        by_id = {r["prompt_id"]: r["completion"] for r in out}
        return [by_id[a["prompt_id"]] for a in asks]

    return classify


def scorer(judge_cfg) -> Callable:
    """The scoring function of a judge config: the task's checker, the LLM judge or the pairwise judge — all
    with the same interface (model_path, prompts, candidates, cfg, desc) -> (records, stats)."""
    from stages.compare import PairwiseJudgeConfig, judge_pairwise
    from stages.judge import JudgeConfig, judge
    from stages.verify import verify

    return judge_pairwise if isinstance(judge_cfg, PairwiseJudgeConfig) else judge if isinstance(
        judge_cfg, JudgeConfig) else verify


def _judge(inp: Inputs):
    """Scores of the generations, one call whatever the judge (judge.kind)."""
    s = inp.cfg
    model = inp.model(s.judge.model) if s.model_judge else None
    return inp.launch(scorer(s.judge), model_path=model, prompts=inp.table("prompts"),
                      candidates=inp.table("generations"), cfg=s.judge, desc=f"iter {inp.t} judge")


def _meta_judge(inp: Inputs):
    from stages.meta_judge import meta_judge

    s = inp.cfg
    return inp.launch(meta_judge, model_path=inp.model(s.meta_judge.model), prompts=inp.table("prompts"),
                      judged=inp.table("judgments"), cfg=s.meta_judge, desc=f"iter {inp.t} meta-judge")


def _refine(inp: Inputs):
    """Feedback rounds on the iteration's samples: the best attempts go back to M(t-1) with the checker's verdict."""
    from stages.refine import refine

    s = inp.cfg
    return inp.launch(refine, model_path=inp.model(), prompts=inp.table("prompts"), judged=inp.table("judgments"),
                      cfg=s.refine, generate_cfg=s.generate, check=s.verify, desc=f"iter {inp.t} refine")


def _pairs(inp: Inputs):
    """Actor pairs (with the thought prompt as their input when the model thinks) plus, with a meta-judge,
    judge pairs (the judge prompt as input); with refine rounds, first-attempt and retry pairs."""
    from stages.meta_judge import add_judge_pairs
    from stages.pairs import build_pairs
    from stages.refine import refine_pairs
    from stages.thoughts import wrap

    s = inp.cfg
    prompts, judged = inp.table("prompts"), inp.table("judgments")
    if judged and "hint" in judged[0]:  # SEELE's samples (curriculum=seele): pairs within one hint
        from stages.hints import hinted_pairs

        return hinted_pairs(prompts, judged, s.pairs)
    if s.refine.rounds:
        return refine_pairs(prompts, judged, inp.table("refinements"), s.pairs, s.refine)
    pairs, stats = build_pairs(wrap(prompts, s.thought), judged, s.pairs)
    if s.meta_judge:
        pairs, stats = add_judge_pairs(pairs, stats, prompts, judged, inp.table("meta_judgments"), s.judge,
                                       s.meta_judge, inp.value("seed"))
    return pairs, stats


def _train(inp: Inputs, out: Path) -> dict:
    from stages.train import train

    run, t = inp.run, inp.t
    steps_before = sum(run.store.marker(k, "model")["stats"].get("steps", 0) for k in range(1, t))
    live = run.launcher.in_process("train") and run.tracker.train_callback(t, steps_before)  # curves while training
    stats = inp.launch(train, model_path=inp.model(), records=inp.table("pairs"), output_dir=out, cfg=inp.cfg.train,
                       initial_model_path=inp.model("initial") if inp.cfg.train.reference == "initial" else None,
                       callbacks=[live] if live else None,
                       desc=f"iter {t} train")
    if not live:  # trained in worker processes: its curves from the model folder
        run.tracker.log_train_history(t, steps_before, str(out))
    return stats


def _evaluate(inp: Inputs):
    """M(t) on the task's held-out prompts; judges named current/initial resolve with M(t) as the current model."""
    from stages.evaluate import evaluate
    from stages.tasks import load_task

    s, t = inp.cfg, inp.t
    task = load_task(s.task)
    test = [{"prompt_id": p.id, "messages": task.messages(p, s.task)} for p in task.test]
    quality = "judge_quality" in s.eval.measures and s.llm_judge
    return inp.launch(evaluate, model_path=inp.model("current", t), prompts=test, cfg=s.eval, check=s.verify,
                      desc=f"eval M{t}", baseline=inp.table("eval", 0) if s.eval.win_rate and t else None,
                      judge_cfg=s.llm_judge if quality else None,
                      judge_model=inp.model(s.llm_judge.model, t) if quality else None,
                      win_judge_model=inp.model(s.eval.win_rate_judge, t) if s.eval.win_rate and t else None,
                      thought_cfg=s.thought)


def _eval_reads(s: StageConfigs, t: int) -> list[Read | Named]:
    reads: list[Read | Named] = [(t, "model")]
    if s.eval.win_rate and t:
        reads += [(0, "eval"), Named("eval.win_rate_judge", s.eval.win_rate_judge, t)]
    if "judge_quality" in s.eval.measures and s.llm_judge:
        reads += [Named("judge.model", s.llm_judge.model, t)]
    return reads


TABLE = [
    Stage("bootstrap", "bootstrap", FIRST, ("bootstrap", "judge", "llm_judge", "eval", "thought"), lambda s, t: [],
          _bootstrap, when=lambda s: s.bootstrap and s.bootstrap.kind == "seed"),
    Stage("bootstrap", "bootstrap", FIRST, ("bootstrap", "task"), lambda s, t: [], _priming,
          when=lambda s: s.bootstrap and s.bootstrap.kind == "priming"),
    Stage("model", "train", FIRST, ("bootstrap",), lambda s, t: [(0, "bootstrap")], _bootstrap_model,
          when=lambda s: s.bootstrap, extra=("processes", "base_model"), process=True),
    Stage("prompts", "prompts", LOOP, ("prompts", "task"),
          lambda s, t: ([Named("prompts.model", s.prompts.model, t - 1)] + [(t - 1, "prompts")] * _shots_read(s, t))
          if s.prompts.source == "self_instruct" else [],
          _prompts, extra=("seed", "iteration"), process=True),
    Stage("generations", "generate", LOOP, ("generate", "thought"), lambda s, t: [(t, "prompts"), (t - 1, "model")],
          _generate, when=lambda s: not s.curriculum, process=True),
    Stage("generations", "generate", LOOP, ("generate", "curriculum", "verify"),
          lambda s, t: [(t, "prompts"), (t - 1, "model")] + [(k, "generations") for k in range(1, t)],
          _generate_hinted, when=lambda s: s.curriculum, process=True),
    Stage("judgments", "judge", LOOP, ("judge", "model_judge"),
          lambda s, t: [(t, "prompts"), (t, "generations")]
          + ([Named("judge.model", s.judge.model, t - 1)] if s.model_judge else []),
          _judge, process=True),
    Stage("behaviors", "behaviors", LOOP, ("behaviors", "task", "generate"),
          lambda s, t: [(t, "judgments")] + [Named("behaviors.classifier", s.behaviors.classifier, t - 1)]
          * bool(s.behaviors.classifier),
          _behaviors, when=lambda s: s.behaviors, process=True),
    Stage("meta_judgments", "meta_judge", LOOP, ("meta_judge",),
          lambda s, t: [(t, "prompts"), (t, "judgments"), Named("meta_judge.model", s.meta_judge.model, t - 1)],
          _meta_judge, when=lambda s: s.meta_judge, process=True),
    Stage("refinements", "refine", LOOP, ("refine", "generate", "verify"),
          lambda s, t: [(t, "prompts"), (t, "judgments"), (t - 1, "model")], _refine,
          when=lambda s: s.refine.rounds > 0, process=True),
    Stage("pairs", "pairs", LOOP, ("pairs", "thought", "judge", "meta_judge", "refine"),
          lambda s, t: [(t, "prompts"), (t, "judgments")] + [(t, "meta_judgments")] * bool(s.meta_judge)
          + [(t, "refinements")] * (s.refine.rounds > 0),
          _pairs, extra=("seed",)),
    Stage("model", "train", LOOP, ("train",),
          lambda s, t: [(t, "pairs"), (t - 1, "model")] + [(0, "model")] * (s.train.reference == "initial"),
          _train, extra=("processes",), process=True),
    Stage("eval", "eval", EVERY, ("eval", "verify", "task", "thought", "llm_judge"), _eval_reads, _evaluate,
          process=True),
]
NAMES = tuple(dict.fromkeys(st.name for st in TABLE))  # artifact names, in order
GROUPS = tuple(dict.fromkeys(st.group for st in TABLE))  # metrics / W&B prefixes, in order
PROCESS_GROUPS = tuple(dict.fromkeys(st.group for st in TABLE if st.process))  # keys of the `runner` node


def stages_at(t: int, s: StageConfigs) -> list[Stage]:
    """The stages iteration t runs, in order."""
    return [st for st in TABLE if st.runs_at(t, s)]


def configs_at(cfg: DictConfig, t: int) -> StageConfigs:
    return stage_configs(cfg, max(t, 1))  # iteration 0 (M0, its evaluation) uses iteration 1's values


# --------------------------------------------------------------------------- identity keys and the plan


def _hash(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _plain(obj):
    return dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else obj


@dataclass
class PlannedStage:
    key: str  # hash of the stage's identity config and of the keys of everything it reads
    config: dict  # its identity config, recorded in the marker (to explain a mismatch)
    deps: list[str]  # what it reads, as "iter_XX/name"
    reads: list[Read] = field(default_factory=list)


def identity(stage: Stage, s: StageConfigs, cfg: DictConfig, t: int) -> dict:
    """The values a stage's result depends on besides its inputs: the configs it uses and its run-level values."""
    return {"layout": LAYOUT, **{name: _plain(getattr(s, name)) for name in stage.uses},
            **{name: _extra(cfg, t, name) for name in stage.extra}}


def plan(cfg: DictConfig) -> dict[tuple[int, str], PlannedStage]:
    """Key of every stage of every iteration, derived from config alone. A finished stage whose marker holds
    another key is stale: its own config, or the config of something it reads (transitively), changed. The
    starting model, when no stage makes it, enters the chain by its name."""
    out: dict[tuple[int, str], PlannedStage] = {}
    base = _hash("base model", cfg.model.name_or_path)
    for t in range(cfg.iterations + 1):
        s = configs_at(cfg, t)
        for st in stages_at(t, s):
            reads = st.artifacts(s, t)
            for r in reads:
                if r not in out and r != (0, "model"):
                    raise RuntimeError(f"stage iter_{t:02d}/{st.name} reads iter_{r[0]:02d}/{r[1]}, which no earlier "
                                       "stage makes (pipeline/graph.py)")
            keys = [out[r].key if r in out else base for r in reads]
            config = identity(st, s, cfg, t)
            out[(t, st.name)] = PlannedStage(_hash(st.name, config, keys), config,
                                             [f"iter_{r[0]:02d}/{r[1]}" for r in reads], reads)
    return out


# --------------------------------------------------------------------------- run-level checks


def runner_configs(cfg: DictConfig) -> dict[str, RunnerConfig]:
    """Where each stage group runs (the `runner` node), checked."""
    values = OmegaConf.to_container(cfg.runner, resolve=True) if "runner" in cfg else {}
    try:
        return _runner_configs(values, PROCESS_GROUPS)
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
    if not is_integer(cfg.iterations) or cfg.iterations < 0:
        raise ConfigError(f"iterations must be an integer >= 0 (0: evaluate the starting model only), got {cfg.iterations!r}")
    if not is_integer(cfg.seed) or not 0 <= cfg.seed < 2**32:  # numpy's and TRL's set_seed take no other
        raise ConfigError(f"seed must be an integer in [0, 2**32), got {cfg.seed!r}")
    if cfg.on_change not in ("error", "recompute"):
        raise ConfigError(f"on_change must be 'error' or 'recompute', got {cfg.on_change!r}")
    if cfg.keep_models not in ("latest", "all"):
        raise ConfigError(f"keep_models must be 'latest' or 'all', got {cfg.keep_models!r}")
    if cfg.logger.kind not in ("wandb", "none"):
        raise ConfigError(f"logger.kind must be 'wandb' or 'none', got {cfg.logger.kind!r}")
    if cfg.logger.kind == "wandb":
        if cfg.logger.mode not in ("offline", "online", "disabled"):
            raise ConfigError(f"logger.mode must be 'offline', 'online' or 'disabled', got {cfg.logger.mode!r}")
        if not is_integer(cfg.logger.log_pairs) or cfg.logger.log_pairs < 0:
            raise ConfigError(f"logger.log_pairs must be an integer >= 0, got {cfg.logger.log_pairs!r}")
    runner_configs(cfg)
    plan(cfg)  # every iteration's stage configs, and a table whose reads all exist


# --------------------------------------------------------------------------- running stages


class Run:
    """One run folder being computed: the store, where stages run, the starting model and the tracker."""

    def __init__(self, cfg: DictConfig, store, launcher: Runner, m0: str, tracker):
        self.cfg, self.store, self.launcher, self.m0, self.tracker = cfg, store, launcher, m0, tracker

    def launch(self, group: str, t: int, fn: Callable, **kwargs):
        return self.launcher(group, t, fn, **kwargs)

    def model_path(self, t: int) -> str:
        """M(t): the model folder of iteration t (iteration 0 without a bootstrap: the starting model)."""
        if (t, "model") not in self.store.plan:
            return self.m0
        if not self.store.is_done(t, "model"):
            raise RuntimeError(f"iter_{t:02d}/model is read before it is finished")
        return str(self.store.path(t, "model"))

    def step(self, t: int, stage: Stage) -> None:
        """The stage's artifact of iteration t: already finished, or computed now and written."""
        if self.store.is_done(t, stage.name):
            return
        inp = Inputs(self, stage, t, configs_at(self.cfg, t), self.store.plan[(t, stage.name)].reads)
        if stage.name == "model":
            self.store.model(t, lambda out: stage.run(inp, out))
        else:
            self.store.table(t, stage.name, lambda: stage.run(inp))
        if stage.process:
            from stages.modeling import release_memory

            release_memory()
