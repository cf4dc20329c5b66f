"""Per-iteration metrics (gathered from the stage markers, so a resumed run reports the same numbers as an
uninterrupted one), the one-line summary per iteration, and the final table.

Metric names follow the stage table (pipeline/graph.py): ``<group>/<stat>`` for every stage that ran in the
iteration — ``prompts/…``, ``generate/…``, ``judge/…``, ``meta_judge/…``, ``pairs/…``, ``train/…``, ``eval/…``
(iteration 0: ``bootstrap/…`` and ``train/…`` with a bootstrap, and ``eval/…``) — each with ``<group>/count``
(records written) and ``<group>/seconds`` (compute time); ``seconds`` is the iteration's total. The same names
are the keys of metrics.json and of the W&B charts.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.graph import TABLE


def _group(t: int, name: str) -> str:
    return next(st.group for st in TABLE if st.name == name and st.in_iteration(t))


def iteration_metrics(store, t: int) -> dict:
    """Every finished stage of iteration t as ``<group>/<stat>``, plus a few derived rates."""
    m: dict = {"iteration": t}
    total = 0.0
    for (it, name) in [k for k in store.plan if k[0] == t]:
        marker, g = store.marker(t, name), _group(t, name)
        for k, v in marker["stats"].items():
            k = k[len(g) + 1:] if k.startswith(f"{g}_") else k
            if k != g:  # a stage's own total (pairs: "pairs") is its count
                m[f"{g}/{k}"] = v
        m[f"{g}/count"], m[f"{g}/seconds"] = marker["count"], marker["seconds"]
        total += marker["seconds"]
    m["seconds"] = round(total, 1)
    if t and "judge/correct" in m:  # the verifiable checker: the share of samples it accepted
        n = max(m["generate/count"], 1)
        m["judge/accuracy"], m["judge/unparseable_rate"] = m["judge/correct"] / n, m["judge/unparseable"] / n
    if t:
        m["generate/mean_tokens"] = m["generate/tokens"] / max(m["generate/count"], 1)
    return m


def _pct(x) -> str:
    return "   -  " if x is None else f"{100 * x:5.1f}%"


def _num(x) -> str:
    return "-" if x is None else f"{x:.0f}"


def _eval_part(m: dict) -> str:
    if "eval/instruction_accuracy" in m:
        out = (f"held-out constraints met {_pct(m['eval/accuracy'])} of prompts, "
               f"{_pct(m['eval/instruction_accuracy'])} of constraints")
    elif "eval/pass@1" in m:
        out = f"held-out pass@1 {_pct(m['eval/pass@1'])}"
    else:
        out = f"held-out {_pct(m['eval/accuracy'])} (lenient {_pct(m.get('eval/accuracy_lenient'))})"
    rounds = refine_rounds(m)
    if rounds:
        out += f" -> {_pct(m[f'eval/accuracy_round_{rounds}']).strip()} after {rounds} feedback round{'s' * (rounds > 1)}"
    if "eval/parse_failure_rate" in m:
        out += f" (thoughts parsed {_pct(1 - m['eval/parse_failure_rate']).strip()})"
    if "eval/vs_m0_comparisons" in m:
        out += (f" | vs M0 win {_pct(m['eval/vs_m0_win_rate'])} ({m['eval/vs_m0_wins']}W/{m['eval/vs_m0_ties']}T/"
                f"{m['eval/vs_m0_losses']}L, {m['eval/vs_m0_no_verdict']} no verdict)")
    if "eval/judge_agreement" in m:
        agree = m["eval/judge_agreement"]
        out += f" | judge agreement {'-' if agree is None else f'{agree:.2f}'}"
    return out


def refine_rounds(m: dict, prefix: str = "eval/accuracy_round_") -> int:
    """The last feedback round with a figure in m (0: none)."""
    return max((int(k[len(prefix):]) for k in m if k.startswith(prefix)), default=0)


def warnings_for(m: dict) -> list[str]:
    out = []
    for prefix, where in (("judge/", "training judgments"), ("eval/judge_", "held-out judgments")):
        if m.get(f"{prefix}collapsed"):
            out.append(f"[iter {m['iteration']}] WARNING: judge scores collapsing toward the maximum: "
                       f"{_pct(m[f'{prefix}top_share']).strip()} of {where} give the top score")
    return out


def print_summary_line(m: dict) -> None:
    if m["iteration"] == 0:
        print(f"[iter 0] M0 {_eval_part(m)} on {m['eval/questions']} prompts", flush=True)
    else:
        loss = m.get("train/loss")
        margin = m.get("train/rewards/margins_mean")
        parts = [f"[iter {m['iteration']}]"]
        if "prompts/written" in m:
            parts.append(f"self-instruct kept {m['prompts/kept']}/{m['prompts/written']} |")
        parts.append(f"samples {m['generate/count']}")
        if "generate/parse_failure_rate" in m:
            parts.append(f"(thoughts parsed {_pct(1 - m['generate/parse_failure_rate']).strip()}, thought/response "
                         f"{_num(m.get('generate/thought_chars'))}/{_num(m.get('generate/response_chars'))} chars)")
        if "judge/accuracy" in m:
            parts.append(f"acc {_pct(m['judge/accuracy'])} | pairs {m['pairs/count']} (skipped: "
                         f"{m.get('pairs/skipped_no_loser', 0)} all-correct, {m.get('pairs/skipped_no_winner', 0)} no-winner)")
        else:
            mean = m.get("judge/score_mean")
            parts.append(f"| judged {m['judge/valid']}/{m['judge/judgments']} valid, mean score "
                         f"{'-' if mean is None else f'{mean:.2f}'} | pairs {m['pairs/count']} (skipped: "
                         f"{m.get('pairs/skipped_tie', 0)} tie, {m.get('pairs/skipped_small_gap', 0)} small gap, "
                         f"{m.get('pairs/skipped_too_few_scored', 0)} unscored)")
            if m.get("pairs/length_gap") is not None:
                parts.append(f"chosen-rejected length {m['pairs/length_gap']:+.0f} chars")
        rounds = refine_rounds(m, "refine/solved_by_round_")
        if rounds:
            solved = "->".join(_pct(m[f"refine/solved_by_round_{r}"]).strip() for r in range(rounds + 1))
            kinds = ", ".join(f"{k[len('pairs/retry_feedback_'):]} {v}" for k, v in sorted(m.items())
                              if k.startswith("pairs/retry_feedback_"))
            parts.append(f"| refine solved {solved} of prompts in {rounds} round{'s' * (rounds > 1)}, pairs "
                         f"{m.get('pairs/first_attempt_pairs', 0)} first-attempt + {m.get('pairs/retry_pairs', 0)} retry"
                         + (f" ({kinds})" if kinds else ""))
        if "meta_judge/comparisons" in m:
            prefers = m.get("meta_judge/prefers_higher_score")
            parts.append(f"| meta-judge {m['meta_judge/comparisons']} comparisons, first-position share "
                         f"{_pct(m.get('meta_judge/position_bias')).strip()}, prefers higher score "
                         f"{_pct(prefers).strip()} | judge pairs {m.get('pairs/judge_pairs', 0)}")
        parts.append("| no training data: model unchanged" if m.get("train/skipped") else f"| train loss {loss:.3f}"
                     + (f" margin {margin:+.3f}" if margin is not None else ""))
        parts.append(f"| {_eval_part(m)} | {m['seconds']:.0f}s")
        print(" ".join(parts), flush=True)
    for w in warnings_for(m):
        print(w, flush=True)


def format_table(history: list[dict]) -> str:
    maj = sorted({k for m in history for k in m if k.startswith("eval/maj@")})
    open_ended = any("eval/instruction_accuracy" in m for m in history)
    two = lambda x: "-" if x is None else f"{x:.2f}"  # noqa: E731
    rounds = max(refine_rounds(m) for m in history)
    extra = [(f"eval/accuracy_round_{rounds}", f"after {rounds} fb rounds", _pct)] * bool(rounds) + [
             ("eval/vs_m0_win_rate", "win vs M0", _pct), ("eval/judge_agreement", "judge agree", two),
             ("judge/score_mean", "mean score", two),
             ("eval/parse_failure_rate", "thoughts parsed", lambda x: "-" if x is None else _pct(1 - x)),
             ("meta_judge/prefers_higher_score", "meta: higher", _pct)]
    extra = [e for e in extra if any(m.get(e[0]) is not None for m in history)]
    if open_ended:
        extra.append(("eval/response_chars", "resp chars", _num))
    show_sample = not open_ended or "judge/accuracy" in history[-1]
    code = any("eval/pass@1" in m for m in history)
    acc = ["constraints met", "of constraints"] if open_ended else ["held-out pass@1"] if code else \
        ["held-out acc", "lenient acc"]
    head = (["iter"] + acc + [k[5:] for k in maj] + [name for _, name, _ in extra]
            + ["sample acc"] * show_sample + ["pairs", "train loss"])
    rows = []
    for m in history:
        loss = m.get("train/loss")
        rows.append([str(m["iteration"]), _pct(m.get("eval/accuracy"))]
                    + [_pct(m.get("eval/instruction_accuracy" if open_ended else "eval/accuracy_lenient"))] * (not code)
                    + [_pct(m.get(k)) for k in maj]
                    + [fmt(m.get(k)) for k, _, fmt in extra]
                    + [_pct(m.get("judge/accuracy"))] * show_sample
                    + [str(m.get("pairs/count", "-")), "-" if loss is None else f"{loss:.3f}"])
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    line = lambda r: "  ".join(c.rjust(w) for c, w in zip(r, widths))  # noqa: E731
    return "\n".join([line(head), line(["-" * w for w in widths])] + [line(r) for r in rows])


def print_table(history: list[dict], run_dir: Path) -> None:
    print("\nHeld-out accuracy per iteration (iteration 0 = the starting model):")
    print(format_table(history))
    print(f"\nRun artifacts: {Path(run_dir).resolve()}")
    print(f"Inspect: python -m pipeline.inspect {run_dir}", flush=True)
