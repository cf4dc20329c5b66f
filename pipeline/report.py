"""Per-iteration metrics (gathered from the stage markers, so a resumed run reports the same numbers as an
uninterrupted one), the one-line summary per iteration, and the final table."""

from __future__ import annotations

from pathlib import Path

STAGES = ("prompts", "generations", "verdicts", "pairs", "model", "eval")


def iteration_metrics(store, t: int, eval_marker: dict) -> dict:
    m: dict = {"iteration": t}
    ev = eval_marker["stats"]
    m.update({f"eval_{k}": v for k, v in ev.items()})
    m["eval_seconds"] = eval_marker["seconds"]
    if t == 0:
        return m
    gen, ver, pairs, model = (store.marker(t, n) for n in ("generations", "verdicts", "pairs", "model"))
    n = max(gen["count"], 1)
    counts = ver["stats"]
    m.update({
        "prompts": store.marker(t, "prompts")["count"],
        "samples": gen["count"],
        "sample_accuracy": counts["correct"] / n,
        "sample_unparseable_rate": counts["unparseable"] / n,
        "gen_tokens_per_s": gen["stats"]["tokens_per_s"],
        "gen_mean_tokens": gen["stats"]["tokens"] / n,
        "gen_truncated": gen["stats"]["truncated"],
        "pairs": pairs["count"],
        **{f"pairs_{k}": v for k, v in pairs["stats"].items() if k not in ("pairs",)},
        **{k if k.startswith("train_") else f"train_{k.replace('/', '_')}": v for k, v in model["stats"].items()},
    })
    for name in STAGES:  # compute time as recorded by each stage, so a resumed run reports the same figures
        m[f"seconds_{name}"] = store.marker(t, name)["seconds"]
    m["seconds_iteration"] = round(sum(m[f"seconds_{name}"] for name in STAGES), 1)
    return m


def _pct(x) -> str:
    return "   -  " if x is None else f"{100 * x:5.1f}%"


def print_summary_line(m: dict) -> None:
    if m["iteration"] == 0:
        print(f"[iter 0] M0 held-out accuracy {_pct(m['eval_accuracy'])} (lenient {_pct(m['eval_accuracy_lenient'])})"
              f" on {m['eval_questions']} questions", flush=True)
        return
    loss = m.get("train_loss")
    margin = m.get("train_rewards_margins_mean")
    print(f"[iter {m['iteration']}] samples {m['samples']} acc {_pct(m['sample_accuracy'])} | pairs {m['pairs']} "
          f"(skipped: {m.get('pairs_skipped_no_loser', 0)} all-correct, {m.get('pairs_skipped_no_winner', 0)} no-winner)"
          + (" | no training data: model unchanged" if m.get("train_skipped") else f" | train loss {loss:.3f}")
          + (f" margin {margin:+.3f}" if margin is not None else "")
          + f" | held-out {_pct(m['eval_accuracy'])} (lenient {_pct(m['eval_accuracy_lenient'])})"
          + f" | {m['seconds_iteration']:.0f}s", flush=True)


def format_table(history: list[dict]) -> str:
    maj = sorted({k for m in history for k in m if k.startswith("eval_maj@")})
    head = ["iter", "held-out acc", "lenient acc"] + [k[5:] for k in maj] + ["sample acc", "pairs", "train loss"]
    rows = []
    for m in history:
        loss = m.get("train_loss")
        rows.append([str(m["iteration"]), _pct(m.get("eval_accuracy")), _pct(m.get("eval_accuracy_lenient"))]
                    + [_pct(m.get(k)) for k in maj]
                    + [_pct(m.get("sample_accuracy")), str(m.get("pairs", "-")),
                       "-" if loss is None else f"{loss:.3f}"])
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    line = lambda r: "  ".join(c.rjust(w) for c, w in zip(r, widths))  # noqa: E731
    return "\n".join([line(head), line(["-" * w for w in widths])] + [line(r) for r in rows])


def print_table(history: list[dict], run_dir: Path) -> None:
    print("\nHeld-out accuracy per iteration (iteration 0 = the starting model):")
    print(format_table(history))
    print(f"\nRun artifacts: {Path(run_dir).resolve()}")
    print(f"Inspect: python -m pipeline.inspect {run_dir}", flush=True)
