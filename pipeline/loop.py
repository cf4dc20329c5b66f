"""The iteration loop. Reads like the algorithm: evaluate M0; then for each iteration t = 1..N:
prompts -> generate from M(t-1) -> verify -> pairs -> train M(t) -> evaluate M(t) -> log.
Every step's result is read from the iteration folder when it is already finished, else computed and
written (pipeline/store.py), so rerunning the same command resumes."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from pipeline.config import plan, stage_configs, validate
from pipeline.models import resolve_model
from pipeline.report import iteration_metrics, print_summary_line, print_table
from pipeline.store import Store
from pipeline.tracking import make_tracker
from stages.evaluate import evaluate
from stages.generate import generate
from stages.pairs import build_pairs
from stages.tasks import load_task, select_prompts
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
    gold = {p.id: p.answer for p in task.train + task.test}
    tracker = make_tracker(cfg, run_dir, job_name)
    history: list[dict] = []
    try:
        _, ev = store.table(0, "eval", lambda: evaluate(model, test, gold, s.eval, s.verify, desc="eval M0"))
        history.append(iteration_metrics(store, 0, ev))
        store.write_metrics(0, history[-1])
        tracker.log_iteration(0, history[-1])
        print_summary_line(history[-1])
        train_steps = 0
        for t in range(1, cfg.iterations + 1):
            s = stage_configs(cfg, t)               # per-iteration schedule applied
            problems = select_prompts(task.train, t, s.task.prompts_per_iteration, cfg.seed)
            prompts, _ = store.table(t, "prompts", lambda: ([
                {"prompt_id": p.id, "messages": task.messages(p, s.task), "question": p.question,
                 "answer": p.answer, "solution": p.solution, "kind": p.kind, "difficulty": p.difficulty}
                for p in problems], {"train_split": len(task.train), "skipped_rows": task.skipped}))
            gens, _ = store.table(t, "generations", lambda: generate(model, prompts, s.generate, desc=f"iter {t} generate"))
            verdicts, _ = store.table(t, "verdicts", lambda: _verify(gens, gold, s))
            pairs, _ = store.table(t, "pairs", lambda: build_pairs(prompts, verdicts, s.pairs))
            cb = tracker.train_callback(t, train_steps)
            model, trained = store.model(t, lambda out: train(model, pairs, out, s.train, initial_model_path=m0,
                                                                callbacks=[cb] if cb else None, desc=f"iter {t} train"))
            train_steps += trained["stats"].get("steps", 0)
            _, ev = store.table(t, "eval", lambda: evaluate(model, test, gold, s.eval, s.verify, desc=f"eval M{t}"))
            history.append(iteration_metrics(store, t, ev))
            store.write_metrics(t, history[-1])
            tracker.log_iteration(t, history[-1])
            tracker.log_pairs(t, pairs)
            print_summary_line(history[-1])
        print_table(history, run_dir)
    finally:
        tracker.finish()
    return history


def _verify(gens: list[dict], gold: dict[str, str], s) -> tuple[list[dict], dict]:
    """Verdicts joined with their completions (pairs need the text), plus the outcome counts."""
    verdicts = verify(gens, gold, s.verify)
    records = [{**g, **v.__dict__} for g, v in zip(gens, verdicts)]
    counts = {k: sum(r["status"] == k for r in records) for k in ("correct", "incorrect", "unparseable")}
    return records, counts
