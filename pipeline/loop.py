"""The iteration loop. Reads like the algorithm: (optionally fine-tune M0 on seed data,) evaluate M0; then for
each iteration t = 1..N: prompts -> generate from M(t-1) -> judge (-> meta-judge) -> pairs -> train M(t) ->
evaluate M(t) -> log. Which prompts, whether the model thinks first, which judge, whether a meta-judge makes
judge pairs and which pairs is config (prompts.source, thought, judge.kind, meta_judge, pairs.rule), not code.
Every step's result is read from the iteration folder when it is already finished, else computed and
written (pipeline/store.py), so rerunning the same command resumes."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from pipeline.config import StageConfigs, bootstrap_pairwise_template, plan, runner_configs, stage_configs, validate
from pipeline.models import resolve_model
from pipeline.report import iteration_metrics, print_summary_line, print_table
from pipeline.runner import Runner
from pipeline.store import Store
from pipeline.tracking import make_tracker
from stages.bootstrap import bootstrap_examples
from stages.compare import judge_pairwise
from stages.evaluate import evaluate
from stages.generate import generate, merge_shards
from stages.judge import judge
from stages.meta_judge import judge_pairs, meta_judge
from stages.pairs import build_pairs
from stages.self_instruct import self_instruct
from stages.tasks import LoadedTask, load_task, select_prompts
from stages.thoughts import split_records, wrap
from stages.train import train
from stages.verify import verify


def run(cfg: DictConfig, run_dir: Path, job_name: str | None = None, overrides: list[str] = ()) -> list[dict]:
    validate(cfg, overrides)                        # bad values fail here, before any model loads
    store = Store(run_dir, plan(cfg))
    store.check(cfg.on_change)                      # stale results: refuse, or forget them
    launch = Runner(runner_configs(cfg), run_dir)   # each stage here, or in its own process(es): config `runner`
    s = stage_configs(cfg, 1)
    task = load_task(s.task)                        # a missing file or field fails here too
    m0 = model = resolve_model(cfg.model.name_or_path, cfg.paths.cache_dir)
    test = [{"prompt_id": p.id, "messages": task.messages(p, s.task)} for p in task.test]
    gold = {p.id: p.target() for p in task.train + task.test}
    tracker = make_tracker(cfg, run_dir, job_name)
    history: list[dict] = []
    try:
        if s.bootstrap:                             # Self-Rewarding's seed fine-tuning: M0 learns to follow and judge
            seed_data, _ = store.table(0, "bootstrap", lambda: (bootstrap_examples(
                s.llm_judge.template if s.llm_judge else "", s.bootstrap.ift, s.bootstrap.eft, s.bootstrap.seed,
                pairwise_template=bootstrap_pairwise_template(s), thought_cfg=s.thought), {}))
            m0 = model = store.model(0, lambda out: launch("train", 0, train, model_path=m0, records=seed_data,
                                                           output_dir=out, cfg=s.bootstrap.train, desc="bootstrap"))[0]
        m0_eval, ev = store.table(0, "eval", lambda: _evaluate(launch, 0, {"current": m0, "initial": m0}, None, test,
                                                                gold, s))
        history.append(iteration_metrics(store, 0, ev))
        store.write_metrics(0, history[-1])
        tracker.log_iteration(0, history[-1])
        print_summary_line(history[-1])
        train_steps, written = 0, []
        for t in range(1, cfg.iterations + 1):
            s = stage_configs(cfg, t)               # per-iteration schedule applied
            who = {"current": model, "initial": m0}  # M(t-1) is the current model while iteration t runs
            prompts, _ = store.table(t, "prompts", lambda: _prompts(launch, t, task, who, written, s, cfg.seed))
            gens, _ = store.table(t, "generations", lambda: _generate(launch, t, model, prompts, s))
            judged, _ = store.table(t, "judgments", lambda: _judge(launch, t, who, prompts, gens, gold, s))
            meta = store.table(t, "meta_judgments", lambda: launch(
                "meta_judge", t, meta_judge, model_path=who.get(s.meta_judge.model, s.meta_judge.model),
                prompts=prompts, judged=judged, cfg=s.meta_judge, desc=f"iter {t} meta-judge"))[0] if s.meta_judge else []
            pairs, _ = store.table(t, "pairs", lambda: _pairs(prompts, judged, meta, s, cfg.seed))
            live = launch.in_process("train") and tracker.train_callback(t, train_steps)  # W&B curves while training
            fresh = not store.is_done(t, "model")
            model, trained = store.model(t, lambda out: launch(
                "train", t, train, model_path=model, records=pairs, output_dir=out, cfg=s.train, initial_model_path=m0,
                callbacks=[live] if live else None, desc=f"iter {t} train"))
            if fresh and not live:                  # trained in worker processes: its curves from the model folder
                tracker.log_train_history(t, train_steps, model)
            train_steps += trained["stats"].get("steps", 0)
            written = [p["question"] for p in prompts]
            _, ev = store.table(t, "eval", lambda: _evaluate(launch, t, {"current": model, "initial": m0}, m0_eval, test,
                                                             gold, s))
            history.append(iteration_metrics(store, t, ev))
            store.write_metrics(t, history[-1])
            tracker.log_iteration(t, history[-1])
            tracker.log_pairs(t, pairs)
            print_summary_line(history[-1])
        print_table(history, run_dir)
    finally:
        tracker.finish()
    return history


def _prompts(launch: Runner, t: int, task: LoadedTask, who: dict, written: list[str], s: StageConfigs, seed: int):
    """The task's next training questions, or new instructions written by a model (self-instruct)."""
    if s.prompts.source == "self_instruct":
        return launch("prompts", t, self_instruct, model_path=who.get(s.prompts.model, s.prompts.model), cfg=s.prompts,
                      iteration=t, previous=written, desc=f"iter {t} self-instruct")
    problems = select_prompts(task.train, t, s.task.prompts_per_iteration, seed)
    return ([{"prompt_id": p.id, "messages": task.messages(p, s.task), "question": p.question, "answer": p.answer,
              "solution": p.solution, "kind": p.kind, "difficulty": p.difficulty} for p in problems],
            {"train_split": len(task.train), "skipped_rows": task.skipped})


def _generate(launch: Runner, t: int, model: str, prompts: list[dict], s: StageConfigs):
    """N samples per prompt; with thoughts (TPO) asked with the thought prompt and split into thought/response."""
    gens, stats = launch("generate", t, generate, merge=merge_shards, model_path=model,
                         prompts=wrap(prompts, s.thought), cfg=s.generate, desc=f"iter {t} generate")
    if s.thought.enabled:
        gens, thought_stats = split_records(gens, s.thought)
        stats.update(thought_stats)
    return gens, stats


def _judge(launch: Runner, t: int, who: dict, prompts: list[dict], gens: list[dict], gold: dict, s: StageConfigs):
    """Scores of the generations: the LLM judge (judge.kind=llm), the pairwise judge's Elo (judge.kind=pairwise),
    or the verifiable checker joined with its completions (pairs need the text) plus the outcome counts."""
    if s.model_judge:
        scorer = judge_pairwise if s.model_judge.kind == "pairwise" else judge
        return launch("judge", t, scorer, model_path=who.get(s.model_judge.model, s.model_judge.model), prompts=prompts,
                      candidates=gens, cfg=s.model_judge, desc=f"iter {t} judge")
    records = [{**g, **v.__dict__} for g, v in zip(gens, verify(gens, gold, s.verify))]
    return records, {k: sum(r["status"] == k for r in records) for k in ("correct", "incorrect", "unparseable")}


def _pairs(prompts: list[dict], judged: list[dict], meta: list[dict], s: StageConfigs, seed: int):
    """Actor pairs (with the thought prompt as their input when the model thinks) plus, with a meta-judge,
    judge pairs (the judge prompt as input) capped to meta_judge.max_share of the total."""
    pairs, stats = build_pairs(wrap(prompts, s.thought), judged, s.pairs)
    if s.meta_judge:
        extra, judge_stats = judge_pairs(prompts, judged, meta, s.llm_judge, s.meta_judge, len(pairs), seed)
        pairs, stats = pairs + extra, {**stats, **judge_stats, "actor_pairs": len(pairs), "pairs": len(pairs) + len(extra)}
    return pairs, stats


def _evaluate(launch: Runner, t: int, who: dict, m0_eval: list[dict] | None, test: list[dict], gold: dict,
              s: StageConfigs):
    """M(t) (= who["current"]) on the held-out prompts; judges named current/initial resolve through `who`."""
    return launch("eval", t, evaluate, model_path=who["current"], prompts=test, gold=gold, cfg=s.eval,
                  verify_cfg=s.verify, desc=f"eval M{t}", baseline=m0_eval if t else None, judge_cfg=s.llm_judge,
                  judge_model=who.get(s.llm_judge.model, s.llm_judge.model) if s.llm_judge else None,
                  win_judge_model=who.get(s.eval.win_rate_judge, s.eval.win_rate_judge), thought_cfg=s.thought)
