"""Per-iteration metrics (gathered from the stage markers, so a resumed run reports the same numbers as an
uninterrupted one), the one-line summary per iteration, and the final table."""

from __future__ import annotations

from pathlib import Path

STAGES = ("prompts", "generations", "judgments", "meta_judgments", "pairs", "model", "eval")  # meta: optional


def iteration_metrics(store, t: int, eval_marker: dict) -> dict:
    m: dict = {"iteration": t}
    ev = eval_marker["stats"]
    m.update({f"eval_{k}": v for k, v in ev.items()})
    m["eval_seconds"] = eval_marker["seconds"]
    if t == 0:
        return m
    prompts, gen, judged, pairs, model = (store.marker(t, n) for n in ("prompts", "generations", "judgments", "pairs",
                                                                        "model"))
    n = max(gen["count"], 1)
    js = judged["stats"]
    m.update({
        "prompts": prompts["count"],
        **{f"prompts_{k}": v for k, v in prompts["stats"].items() if isinstance(v, (int, float))},
        "samples": gen["count"],
        "gen_tokens_per_s": gen["stats"]["tokens_per_s"],
        "gen_mean_tokens": gen["stats"]["tokens"] / n,
        "gen_truncated": gen["stats"]["truncated"],
        **{f"gen_{k}": v for k, v in gen["stats"].items() if k.startswith("parse_") or k.endswith("_chars")},
        "pairs": pairs["count"],
        **{f"pairs_{k}": v for k, v in pairs["stats"].items() if k not in ("pairs",)},
        **{k if k.startswith("train_") else f"train_{k.replace('/', '_')}": v for k, v in model["stats"].items()},
    })
    if "correct" in js:  # the verifiable checker
        m.update({"sample_accuracy": js["correct"] / n, "sample_unparseable_rate": js["unparseable"] / n})
    else:  # an LLM judge
        m.update({f"judge_{k}": v for k, v in js.items() if isinstance(v, (int, float, type(None))) and k != "judge_fingerprint"})
    meta = store.marker(t, "meta_judgments") if (t, "meta_judgments") in store.plan else None
    if meta:
        m.update({f"meta_{k}": v for k, v in meta["stats"].items() if isinstance(v, (int, float, type(None)))})
        m["meta_judgments"] = meta["count"]
    ran = [name for name in STAGES if name != "meta_judgments" or meta]
    for name in ran:  # compute time as recorded by each stage, so a resumed run reports the same figures
        m[f"seconds_{name}"] = store.marker(t, name)["seconds"]
    m["seconds_iteration"] = round(sum(m[f"seconds_{name}"] for name in ran), 1)
    return m


def _pct(x) -> str:
    return "   -  " if x is None else f"{100 * x:5.1f}%"


def _num(x) -> str:
    return "-" if x is None else f"{x:.0f}"


def _eval_part(m: dict) -> str:
    if "eval_instruction_accuracy" in m:
        out = (f"held-out constraints met {_pct(m['eval_accuracy'])} of prompts, "
               f"{_pct(m['eval_instruction_accuracy'])} of constraints")
    else:
        out = f"held-out {_pct(m['eval_accuracy'])} (lenient {_pct(m['eval_accuracy_lenient'])})"
    if "eval_parse_failure_rate" in m:
        out += f" (thoughts parsed {_pct(1 - m['eval_parse_failure_rate']).strip()})"
    if "eval_vs_m0_comparisons" in m:
        out += (f" | vs M0 win {_pct(m['eval_vs_m0_win_rate'])} ({m['eval_vs_m0_wins']}W/{m['eval_vs_m0_ties']}T/"
                f"{m['eval_vs_m0_losses']}L, {m['eval_vs_m0_no_verdict']} no verdict)")
    if "eval_judge_agreement" in m:
        agree = m["eval_judge_agreement"]
        out += f" | judge agreement {'-' if agree is None else f'{agree:.2f}'}"
    return out


def warnings_for(m: dict) -> list[str]:
    out = []
    for prefix, where in (("judge_", "training judgments"), ("eval_judge_", "held-out judgments")):
        if m.get(f"{prefix}collapsed"):
            out.append(f"[iter {m['iteration']}] WARNING: judge scores collapsing toward the maximum: "
                       f"{_pct(m[f'{prefix}top_share']).strip()} of {where} give the top score")
    return out


def print_summary_line(m: dict) -> None:
    if m["iteration"] == 0:
        print(f"[iter 0] M0 {_eval_part(m)} on {m['eval_questions']} prompts", flush=True)
    else:
        loss = m.get("train_loss")
        margin = m.get("train_rewards_margins_mean")
        parts = [f"[iter {m['iteration']}]"]
        if "prompts_written" in m:
            parts.append(f"self-instruct kept {m['prompts_kept']}/{m['prompts_written']} |")
        parts.append(f"samples {m['samples']}")
        if "gen_parse_failure_rate" in m:
            parts.append(f"(thoughts parsed {_pct(1 - m['gen_parse_failure_rate']).strip()}, thought/response "
                         f"{_num(m.get('gen_thought_chars'))}/{_num(m.get('gen_response_chars'))} chars)")
        if "sample_accuracy" in m:
            parts.append(f"acc {_pct(m['sample_accuracy'])} | pairs {m['pairs']} (skipped: "
                         f"{m.get('pairs_skipped_no_loser', 0)} all-correct, {m.get('pairs_skipped_no_winner', 0)} no-winner)")
        else:
            mean = m.get("judge_score_mean")
            parts.append(f"| judged {m['judge_valid']}/{m['judge_judgments']} valid, mean score "
                         f"{'-' if mean is None else f'{mean:.2f}'} | pairs {m['pairs']} (skipped: "
                         f"{m.get('pairs_skipped_tie', 0)} tie, {m.get('pairs_skipped_small_gap', 0)} small gap, "
                         f"{m.get('pairs_skipped_too_few_scored', 0)} unscored)")
            if m.get("pairs_length_gap") is not None:
                parts.append(f"chosen-rejected length {m['pairs_length_gap']:+.0f} chars")
        if "meta_comparisons" in m:
            prefers = m.get("meta_prefers_higher_score")
            parts.append(f"| meta-judge {m['meta_comparisons']} comparisons, first-position share "
                         f"{_pct(m.get('meta_position_bias')).strip()}, prefers higher score "
                         f"{_pct(prefers).strip()} | judge pairs {m.get('pairs_judge_pairs', 0)}")
        parts.append("| no training data: model unchanged" if m.get("train_skipped") else f"| train loss {loss:.3f}"
                     + (f" margin {margin:+.3f}" if margin is not None else ""))
        parts.append(f"| {_eval_part(m)} | {m['seconds_iteration']:.0f}s")
        print(" ".join(parts), flush=True)
    for w in warnings_for(m):
        print(w, flush=True)


def format_table(history: list[dict]) -> str:
    maj = sorted({k for m in history for k in m if k.startswith("eval_maj@")})
    open_ended = any("eval_instruction_accuracy" in m for m in history)
    two = lambda x: "-" if x is None else f"{x:.2f}"  # noqa: E731
    extra = [("eval_vs_m0_win_rate", "win vs M0", _pct), ("eval_judge_agreement", "judge agree", two),
             ("judge_score_mean", "mean score", two),
             ("eval_parse_failure_rate", "thoughts parsed", lambda x: "-" if x is None else _pct(1 - x)),
             ("meta_prefers_higher_score", "meta: higher", _pct)]
    extra = [e for e in extra if any(m.get(e[0]) is not None for m in history)]
    if open_ended:
        extra.append(("eval_response_chars", "resp chars", _num))
    show_sample = not open_ended or "sample_accuracy" in history[-1]
    acc = ["constraints met", "of constraints"] if open_ended else ["held-out acc", "lenient acc"]
    head = (["iter"] + acc + [k[5:] for k in maj] + [name for _, name, _ in extra]
            + ["sample acc"] * show_sample + ["pairs", "train loss"])
    rows = []
    for m in history:
        loss = m.get("train_loss")
        rows.append([str(m["iteration"]), _pct(m.get("eval_accuracy")),
                     _pct(m.get("eval_instruction_accuracy" if open_ended else "eval_accuracy_lenient"))]
                    + [_pct(m.get(k)) for k in maj]
                    + [fmt(m.get(k)) for k, _, fmt in extra]
                    + [_pct(m.get("sample_accuracy"))] * show_sample
                    + [str(m.get("pairs", "-")), "-" if loss is None else f"{loss:.3f}"])
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    line = lambda r: "  ".join(c.rjust(w) for c, w in zip(r, widths))  # noqa: E731
    return "\n".join([line(head), line(["-" * w for w in widths])] + [line(r) for r in rows])


def print_table(history: list[dict], run_dir: Path) -> None:
    print("\nHeld-out accuracy per iteration (iteration 0 = the starting model):")
    print(format_table(history))
    print(f"\nRun artifacts: {Path(run_dir).resolve()}")
    print(f"Inspect: python -m pipeline.inspect {run_dir}", flush=True)
