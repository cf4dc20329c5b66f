"""The iteration loop. Reads like the algorithm: (optionally fine-tune M0 on seed data,) evaluate M0; then for
each iteration t = 1..N: prompts -> generate from M(t-1) -> judge -> pairs -> train M(t) -> evaluate M(t) -> log.
Which prompts, which judge and which pairs is config (prompts.source, judge.kind, pairs.rule), not code.
Every step's result is read from the iteration folder when it is already finished, else computed and
written (pipeline/store.py), so rerunning the same command resumes."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from pipeline.config import StageConfigs, plan, stage_configs, validate
from pipeline.models import resolve_model
from pipeline.report import iteration_metrics, print_summary_line, print_table
from pipeline.store import Store
from pipeline.tracking import make_tracker
from stages.bootstrap import bootstrap_examples
from stages.evaluate import evaluate
from stages.generate import generate
from stages.judge import judge
from stages.pairs import build_pairs
from stages.self_instruct import self_instruct
from stages.tasks import LoadedTask, load_task, select_prompts
from stages.train import train
from stages.verify import verify


def run(cfg: DictConfig, run_dir: Path, job_name: str | None = None, overrides: list[str] = ()) -> list[dict]:
    validate(cfg, overrides)                        # bad values fail here, before any model loads
    store = Store(run_dir, plan(cfg))
    store.check(cfg.on_change)                      # stale results: refuse, or forget them
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
                pairwise_template=s.eval.pairwise_template if s.eval.win_rate else ""), {}))
            m0 = model = store.model(0, lambda out: train(m0, seed_data, out, s.bootstrap.train, desc="bootstrap"))[0]
        m0_eval, ev = store.table(0, "eval", lambda: _evaluate(0, {"current": m0, "initial": m0}, None, test, gold, s))
        history.append(iteration_metrics(store, 0, ev))
        store.write_metrics(0, history[-1])
        tracker.log_iteration(0, history[-1])
        print_summary_line(history[-1])
        train_steps, written = 0, []
        for t in range(1, cfg.iterations + 1):
            s = stage_configs(cfg, t)               # per-iteration schedule applied
            who = {"current": model, "initial": m0}  # M(t-1) is the current model while iteration t runs
            prompts, _ = store.table(t, "prompts", lambda: _prompts(t, task, who, written, s, cfg.seed))
            gens, _ = store.table(t, "generations", lambda: generate(model, prompts, s.generate, desc=f"iter {t} generate"))
            judged, _ = store.table(t, "judgments", lambda: _judge(t, who, prompts, gens, gold, s))
            pairs, _ = store.table(t, "pairs", lambda: build_pairs(prompts, judged, s.pairs))
            cb = tracker.train_callback(t, train_steps)
            model, trained = store.model(t, lambda out: train(model, pairs, out, s.train, initial_model_path=m0,
                                                                callbacks=[cb] if cb else None, desc=f"iter {t} train"))
            train_steps += trained["stats"].get("steps", 0)
            written = [p["question"] for p in prompts]
            _, ev = store.table(t, "eval", lambda: _evaluate(t, {"current": model, "initial": m0}, m0_eval, test, gold, s))
            history.append(iteration_metrics(store, t, ev))
            store.write_metrics(t, history[-1])
            tracker.log_iteration(t, history[-1])
            tracker.log_pairs(t, pairs)
            print_summary_line(history[-1])
        print_table(history, run_dir)
    finally:
        tracker.finish()
    return history


def _prompts(t: int, task: LoadedTask, who: dict, written: list[str], s: StageConfigs, seed: int):
    """The task's next training questions, or new instructions written by a model (self-instruct)."""
    if s.prompts.source == "self_instruct":
        writer = who.get(s.prompts.model, s.prompts.model)
        return self_instruct(writer, s.prompts, t, previous=written, desc=f"iter {t} self-instruct")
    problems = select_prompts(task.train, t, s.task.prompts_per_iteration, seed)
    return ([{"prompt_id": p.id, "messages": task.messages(p, s.task), "question": p.question, "answer": p.answer,
              "solution": p.solution, "kind": p.kind, "difficulty": p.difficulty} for p in problems],
            {"train_split": len(task.train), "skipped_rows": task.skipped})


def _judge(t: int, who: dict, prompts: list[dict], gens: list[dict], gold: dict, s: StageConfigs):
    """Scores of the generations: the LLM judge (judge.kind=llm), or the verifiable checker joined with its
    completions (pairs need the text) plus the outcome counts."""
    if s.llm_judge:
        return judge(who.get(s.llm_judge.model, s.llm_judge.model), prompts, gens, s.llm_judge, desc=f"iter {t} judge")
    records = [{**g, **v.__dict__} for g, v in zip(gens, verify(gens, gold, s.verify))]
    return records, {k: sum(r["status"] == k for r in records) for k in ("correct", "incorrect", "unparseable")}


def _evaluate(t: int, who: dict, m0_eval: list[dict] | None, test: list[dict], gold: dict, s: StageConfigs):
    """M(t) (= who["current"]) on the held-out prompts; judges named current/initial resolve through `who`."""
    return evaluate(who["current"], test, gold, s.eval, s.verify, desc=f"eval M{t}", baseline=m0_eval if t else None,
                    judge_cfg=s.llm_judge, judge_model=who.get(s.llm_judge.model, s.llm_judge.model) if s.llm_judge else None,
                    win_judge_model=who.get(s.eval.win_rate_judge, s.eval.win_rate_judge))
