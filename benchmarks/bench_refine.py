"""The improvement cycle at evaluation: held-out accuracy after feedback rounds r = 0..R of one model (default: the
embedded SmolLM2-135M-Instruct, i.e. M0), and what each round costs, on the built-in arithmetic and code tasks.

    python benchmarks/bench_refine.py                              # M0, 2 rounds, arithmetic (200) and code (12)
    python benchmarks/bench_refine.py --rounds 3 --tasks arithmetic --model outputs/<run>/iter_03/model

It evaluates exactly as the pipeline's `eval=refine` does (stages/evaluate.py: greedy answer, then each wrong
answer goes back with the checker's feedback, greedy revision), composed from the same config (`method=irpo_refine
task=<task>`). Baseline: round 0 (the greedy answers, no feedback) — its accuracy and its generation time, beside
each round's; "prompts run" is how many wrong answers went back to the model in that round.
"""

from __future__ import annotations

import argparse
import time

import common  # noqa: F401  (path and environment)
from common import cache_dir, count, header, table


def run(task_name: str, model: str, rounds: int, max_test: int | None) -> list[dict]:
    from hydra import compose, initialize_config_module

    from pipeline.graph import configs_at
    from pipeline.models import resolve_model
    from stages.evaluate import evaluate
    from stages.refine import feedback_kind
    from stages.tasks import load_task

    overrides = ["method=irpo_refine", f"task={task_name}", f"eval.refine_rounds={rounds}"]
    if max_test:
        overrides.append(f"task.max_test={max_test}")
    with initialize_config_module(config_module="conf", version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    s = configs_at(cfg, 1)
    task = load_task(s.task)
    prompts = [{"prompt_id": p.id, "messages": task.messages(p, s.task)} for p in task.test]
    path = resolve_model(model, cache_dir())
    t0 = time.perf_counter()
    records, m = evaluate(path, prompts, s.eval, s.verify, desc=f"{task_name} refine")
    first_secs = time.perf_counter() - t0 - m["refine_seconds"]
    shown: dict[str, list[int]] = {}  # feedback kind shown on the greedy answer -> [answers, solved by a revision]
    for r in records:
        if not r["correct"]:
            kind = shown.setdefault(feedback_kind(r["status"], r["feedback_shown"]), [0, 0])
            kind[0] += 1
            kind[1] += r["refine_solved_round"] > 0
    print(f"{task_name}: feedback shown on the wrong first answers (kind: answers, solved after it): "
          + ", ".join(f"{k}: {n}, {s}" for k, (n, s) in sorted(shown.items())), flush=True)
    rows = [{"task": task_name, "round": 0, "questions": m["questions"], "prompts run": m["questions"],
             "accuracy": f"{100 * m['accuracy_round_0']:.1f}%", "gain": "+0.0", "seconds": f"{first_secs:.0f}",
             "s / prompt": f"{first_secs / max(m['questions'], 1):.2f}"}]
    for k in range(1, rounds + 1):
        secs, n = m[f"refine_round_{k}_seconds"], m[f"refine_round_{k}_prompts"]
        rows.append({"task": task_name, "round": k, "questions": m["questions"], "prompts run": n,
                     "accuracy": f"{100 * m[f'accuracy_round_{k}']:.1f}%",
                     "gain": f"{100 * (m[f'accuracy_round_{k}'] - m['accuracy_round_0']):+.1f}",
                     "seconds": f"{secs:.0f}", "s / prompt": f"{secs / max(n, 1):.2f}"})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="embedded:smollm2-135m-instruct")
    ap.add_argument("--rounds", type=count, default=2)
    ap.add_argument("--tasks", nargs="+", default=["arithmetic", "code"])
    ap.add_argument("--max-test", type=int, default=None)
    a = ap.parse_args()
    header("Held-out accuracy after feedback rounds", "python benchmarks/bench_refine.py " +
           f"--model {a.model} --rounds {a.rounds} --tasks {' '.join(a.tasks)}", "the tasks' held-out splits")
    rows = [row for t in a.tasks for row in run(t, a.model, a.rounds, a.max_test)]
    print(table(rows, list(rows[0])))


if __name__ == "__main__":
    main()
