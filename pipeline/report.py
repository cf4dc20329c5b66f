"""Per-iteration metrics (gathered from the stage markers, so a resumed run reports the same numbers as an
uninterrupted one), the one-line summary per iteration, and the final table.

Metric names follow the stage table (pipeline/graph.py): ``<group>/<stat>`` for every stage that ran in the
iteration — ``prompts/…``, ``generate/…``, ``judge/…``, ``meta_judge/…``, ``pairs/…``, ``train/…``, ``eval/…``
(iteration 0: ``bootstrap/…`` and ``train/…`` with a bootstrap, and ``eval/…``) — each with ``<group>/count``
(records written) and ``<group>/seconds`` (compute time); ``seconds`` is the iteration's total. The same names
are the keys of metrics.json and of the W&B charts.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

from pipeline.graph import TABLE
from pipeline.store import atomic_write_text
from stages import is_number


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
    if t and m.get("pairs/prompts"):  # problems that taught something (SEELE's aim: more of them)
        m["pairs/prompt_yield"] = m.get("pairs/prompts_with_pairs", 0) / m["pairs/prompts"]
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


def refine_rounds(m: dict, prefix: str = "eval/accuracy_round_", suffix: str = "") -> int:
    """The last round (feedback round; SEELE's with generate/round_, _accuracy) with a figure in m (0: none)."""
    return max((int(k[len(prefix):len(k) - len(suffix)]) for k in m if k.startswith(prefix) and k.endswith(suffix)
                and k[len(prefix):len(k) - len(suffix)].isdigit()), default=0)


def warnings_for(m: dict) -> list[str]:
    out = []
    for prefix, where in (("judge/", "training judgments"), ("eval/judge_", "held-out judgments")):
        if m.get(f"{prefix}collapsed"):
            out.append(f"[iter {m['iteration']}] WARNING: judge scores collapsing toward the maximum: "
                       f"{_pct(m[f'{prefix}top_share']).strip()} of {where} give the top score")
    return out


def behavior_part(m: dict) -> str:
    """The "behaviors in % of samples (correct|incorrect): verification 12|30, ..." — the share of samples that show
    each behavior (stages/behaviors.py), split by the checker's verdict when there is one."""
    from stages.behaviors import BEHAVIORS

    split = m.get("behaviors/verification_share_incorrect") is not None or \
        m.get("behaviors/verification_share_correct") is not None
    pct = lambda v: "-" if v is None else f"{100 * v:.0f}"  # noqa: E731
    cells = [f"{b} " + ("|".join(pct(m.get(f"behaviors/{b}_share_{k}")) for k in ("correct", "incorrect")) if split
                        else pct(m.get(f"behaviors/{b}_share"))) for b in BEHAVIORS]
    return f"behaviors % of samples{' (correct|incorrect)' if split else ''}: {', '.join(cells)}"


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
        rounds = refine_rounds(m, "generate/round_", "_accuracy")
        if rounds:  # SEELE
            acc = "->".join(_pct(m[f"generate/round_{r}_accuracy"]).strip() for r in range(1, rounds + 1))
            parts.append(f"| hints: accuracy by round {acc} (target {m['generate/target']:.2f}), rate carried "
                         f"{m.get('generate/next_rate_mean') or 0:.2f}, fit failures {m['generate/fit_failures']}, "
                         f"problems with a pair {_pct(m.get('pairs/prompt_yield')).strip()}")
        rounds = refine_rounds(m, "refine/solved_by_round_")
        if rounds:
            solved = "->".join(_pct(m[f"refine/solved_by_round_{r}"]).strip() for r in range(rounds + 1))
            kinds = ", ".join(f"{k[len('pairs/retry_feedback_'):]} {v}" for k, v in sorted(m.items())
                              if k.startswith("pairs/retry_feedback_"))
            parts.append(f"| refine solved {solved} of prompts in {rounds} round{'s' * (rounds > 1)}, pairs "
                         f"{m.get('pairs/first_attempt_pairs', 0)} first-attempt + {m.get('pairs/retry_pairs', 0)} retry"
                         + (f" ({kinds})" if kinds else ""))
        if "behaviors/analysed" in m:
            parts.append(f"| {behavior_part(m)}")
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


# ---------------------------------------------------------------------------------------------------------------
# The report: `python -m pipeline.report RUN [RUN ...]` — figures and tables over finished runs, as one HTML file.

# keys of the config that do not change what a run measures: runs that differ only in these are repeats of one
# setting (seeds), averaged with a 95% interval across them
NOT_A_SETTING = ("seed", "run_name", "paths", "logger", "on_change", "keep_models", "runner")

# (file, title, panels: (metric, panel title, unit: "%" a rate drawn in percent, "p" a probability, None: other));
# a panel without data is left out, a figure without panels too
LINE_FIGURES = [
    ("heldout", "Held-out evaluation", [
        ("eval/accuracy", "accuracy (strict)", "%"), ("eval/accuracy_lenient", "accuracy (lenient)", "%"),
        ("eval/instruction_accuracy", "constraints met", "%"), ("eval/vs_m0_win_rate", "win rate vs M0", "%"),
        ("eval/judge_agreement", "judge agreement with gold", "p")]),
    ("samples", "Training samples", [
        ("judge/accuracy", "sample accuracy (checker)", "%"), ("judge/score_mean", "mean judge score", None),
        ("pairs/count", "preference pairs", None), ("pairs/prompt_yield", "problems with a pair", "%")]),
    ("training", "DPO, per iteration (mean over steps)", [
        ("train/loss_mean", "loss", None), ("train/rewards/margins_mean", "reward margin", None),
        ("train/logps/chosen_mean", "chosen log-probability", None)]),
    ("behaviors", "Reasoning behaviors: share of training samples that show each", [
        ("behaviors/verification_share", "verification", "%"), ("behaviors/backtracking_share", "backtracking", "%"),
        ("behaviors/subgoal_share", "subgoal setting", "%"), ("behaviors/backward_share", "backward chaining", "%")]),
    ("lengths", "Response length", [
        ("generate/mean_tokens", "samples (tokens)", None), ("eval/mean_tokens", "held-out answers (tokens)", None),
        ("generate/thought_chars", "thoughts (chars)", None)]),
]
# per-problem columns of eval.parquet behind a held-out rate, for a bootstrap interval over problems (a single run)
PER_PROBLEM = {"eval/accuracy": "correct", "eval/accuracy_lenient": "correct_lenient"}


class ReportError(ValueError):
    pass


@dataclass
class RunData:
    path: Path
    config: dict
    overrides: list[str]
    history: list[dict]
    versions: dict  # the last start's (versions.json)
    restarts_with_other_versions: int = 0  # starts whose library versions differed from the one before


@dataclass
class Group:
    """Runs of one setting (they differ only in NOT_A_SETTING keys, e.g. the seed)."""

    label: str
    runs: list[RunData]


def record_versions(run_dir: Path) -> None:
    """Append the versions of the libraries that shape the numbers to <run>/versions.json when they changed since the
    run's last start (a resumed run may mix versions: the report says so)."""
    import datetime
    import platform
    from importlib.metadata import PackageNotFoundError, version

    def v(name):
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    entry = {"python": platform.python_version(), "machine": platform.machine(),
             **{p: v(p) for p in ("selfimprove", "torch", "transformers", "trl", "peft", "accelerate", "datasets",
                                  "math-verify", "vllm")}}
    path = Path(run_dir) / "versions.json"
    log = json.loads(path.read_text()) if path.exists() else []
    if not log or {k: x for k, x in log[-1].items() if k != "started"} != entry:
        log.append({"started": datetime.datetime.now().isoformat(timespec="seconds"), **entry})
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(log, indent=1) + "\n")


def find_runs(paths: list[str | Path]) -> list[Path]:
    """Run folders (holding iter_00/metrics.json) given directly or found under a folder (a sweep)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if not p.is_dir():
            raise ReportError(f"{p}: {'not a folder (give run or sweep folders)' if p.exists() else 'no such folder'}")
        found = [p] if (p / "iter_00" / "metrics.json").exists() else \
            sorted(m.parent.parent for m in p.rglob("iter_00/metrics.json"))
        if not found:
            raise ReportError(f"{p}: no finished iteration (iter_00/metrics.json) in it or under it")
        out += [f for f in found if f not in out]
    return out


def load_run(path: Path) -> RunData:
    from omegaconf import OmegaConf

    cfg = path / ".hydra" / "config.yaml"
    config = OmegaConf.to_container(OmegaConf.load(cfg)) if cfg.exists() else {}
    ov = path / ".hydra" / "overrides.yaml"
    overrides = [str(o) for o in OmegaConf.to_container(OmegaConf.load(ov))] if ov.exists() else []  # as typed
    history = []
    for t in range(10_000):
        m = path / f"iter_{t:02d}" / "metrics.json"
        if not m.exists():
            break
        history.append(json.loads(m.read_text()))
    vpath = path / "versions.json"
    log = json.loads(vpath.read_text()) if vpath.exists() else []
    return RunData(path, config, overrides, history, log[-1] if log else {}, max(len(log) - 1, 0))


def _setting_overrides(run: RunData) -> list[str]:
    return [o for o in run.overrides if o.split("=")[0].lstrip("+~").split(".")[0].split("/")[0] not in NOT_A_SETTING
            and not o.startswith("hydra")]


def group_runs(runs: list[RunData]) -> list[Group]:
    """Runs whose configs agree apart from NOT_A_SETTING form a group; its label is what sets it apart."""
    by_key: dict[str, list[RunData]] = {}
    for r in runs:
        key = json.dumps({k: v for k, v in r.config.items() if k not in NOT_A_SETTING}, sort_keys=True, default=str)
        by_key.setdefault(key, []).append(r)
    groups = list(by_key.values())
    sets = [set(_setting_overrides(g[0])) for g in groups]
    common = set.intersection(*sets) if sets else set()
    methods = [str(g[0].config.get("method_name", "")) for g in groups]
    labels = []
    for g, method in zip(groups, methods):
        differs = [o for o in _setting_overrides(g[0]) if o not in common and not o.startswith("method=")]
        labels.append(" ".join(([method] if len(set(methods)) > 1 or not differs else []) + differs)
                      or g[0].path.name)
    if len(set(labels)) < len(labels):  # settings the overrides do not tell apart: name them by folder
        labels = [f"{lab} ({g[0].path.name})" for lab, g in zip(labels, groups)]
    return [Group(lab, g) for lab, g in zip(labels, groups)]


def t_interval(values: list[float]) -> tuple[float, float, float]:
    """Mean and 95% Student-t interval across repeats (seeds)."""
    import numpy as np

    a = np.asarray(values, dtype=float)
    mean = float(a.mean())
    if len(a) < 2:
        return mean, mean, mean
    from scipy.special import stdtrit  # the t quantile (scipy.stats takes seconds to import)

    half = float(stdtrit(len(a) - 1, 0.975) * a.std(ddof=1) / np.sqrt(len(a)))
    return mean, mean - half, mean + half


def bootstrap_interval(outcomes: list[float], n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% percentile bootstrap interval of a rate over held-out problems (resampling problems)."""
    import numpy as np

    a = np.asarray(outcomes, dtype=float)
    if not len(a):
        return float("nan"), float("nan")
    means = np.random.default_rng(seed).choice(a, size=(n_boot, len(a))).mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def _column(path: Path, col: str) -> list | None:
    """One column of a parquet file (None: no file or no such column), without reading the others."""
    import pyarrow.parquet as pq

    if not path.exists() or col not in pq.read_schema(path).names:
        return None
    return pq.read_table(path, columns=[col]).column(col).to_pylist()


@functools.lru_cache(maxsize=256)
def _problem_interval(path: Path, col: str, mean: float, lo: float, hi: float) -> tuple[float, float]:
    """The bootstrap interval of a rate from its per-problem outcomes in `path` (the table and the figures of one
    report ask for the same ones: computed once), used only when they give the stored mean; else (lo, hi)."""
    vals = _column(path, col)
    if vals is None or not vals or abs(sum(map(float, vals)) / len(vals) - mean) > 1e-9:
        return lo, hi
    return bootstrap_interval([float(v) for v in vals])


def series(group: Group, key: str):
    """The group's figure for `key` per iteration: mean across its runs with a t interval (2+ runs), or one run's
    value with a bootstrap interval over held-out problems (rates with per-problem outcomes); None: no data."""
    from pipeline.figures import Series

    xs, ys, los, his, n_max = [], [], [], [], 0
    for t in range(max(len(r.history) for r in group.runs)):
        vals = [r.history[t][key] for r in group.runs if t < len(r.history) and is_number(r.history[t].get(key))]
        if not vals:
            continue
        mean, lo, hi = t_interval(vals)
        if len(vals) == 1 and key in PER_PROBLEM:
            run = next(r for r in group.runs if t < len(r.history) and key in r.history[t])
            lo, hi = _problem_interval(run.path / f"iter_{t:02d}" / "eval.parquet", PER_PROBLEM[key], mean, lo, hi)
        xs.append(t), ys.append(mean), los.append(lo), his.append(hi)
        n_max = max(n_max, len(vals))
    if not xs:
        return None
    banded = n_max > 1 or any(lo != hi for lo, hi in zip(los, his))  # seeds: an interval even when they agree
    return Series(group.label, xs, ys, los if banded else None, his if banded else None), n_max


def _cell(s, t: int, n: int) -> str:
    if s is None or t not in s.x:
        return "-"
    i = s.x.index(t)
    y = f"{100 * s.y[i]:.1f}"
    if s.lo is None:
        return y
    if n > 1:
        return f"{y} ± {100 * (s.hi[i] - s.y[i]):.1f}"
    return f"{y} [{100 * s.lo[i]:.1f}, {100 * s.hi[i]:.1f}]"


def summary_table(groups: list[Group], key: str = "eval/accuracy") -> str:
    """Per iteration and group, in percent (every headline key is a rate): mean ± 95% t half-width over seeds, or
    one run's value [95% bootstrap interval]."""
    cols = [(g, *(series(g, key) or (None, 0))) for g in groups]
    iters = sorted({t for _, s, _ in cols if s for t in s.x})
    head = ["iter"] + [f"{g.label} (n={len(g.runs)})" for g in groups]
    rows = [[str(t)] + [_cell(s, t, n) for _, s, n in cols] for t in iters]
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    line = lambda r: "  ".join(c.rjust(w) for c, w in zip(r, widths))  # noqa: E731
    return "\n".join([line(head), line(["-" * w for w in widths])] + [line(r) for r in rows])


def headline(groups: list[Group]) -> str:
    """The held-out rate every run has: accuracy, else pass@1, else the win rate against M0."""
    for key in ("eval/accuracy", "eval/pass@1", "eval/vs_m0_win_rate"):
        if all(any(key in m for r in g.runs for m in r.history) for g in groups):
            return key
    return "eval/accuracy"


def panel_title(groups: list[Group], key: str, title: str) -> str:
    """On the rule-checked instruction task (every run logs eval/instruction_accuracy) eval/accuracy is the share of
    prompts meeting every constraint, not an answer's accuracy: the panel says so."""
    if key == "eval/accuracy" and all("eval/instruction_accuracy" in m for g in groups for r in g.runs
                                      for m in r.history):
        return "prompts meeting every constraint"
    return title


def _figures(groups: list[Group], out: Path) -> list[tuple[Path, str]]:
    from pipeline import figures

    made = []
    for name, title, panels in LINE_FIGURES:
        drawn = []
        for key, ptitle, unit in panels:
            ss = [s for s in (series(g, key) for g in groups) if s]
            if ss:
                drawn.append((panel_title(groups, key, ptitle), [s for s, _ in ss], unit))
        if drawn:
            made.append((figures.lines(out / f"{name}.png", title, drawn), title))
    rounds = max(refine_rounds(m) for g in groups for r in g.runs for m in r.history)
    if rounds:
        drawn = [(f"after {k} feedback round{'s' * (k != 1)}" if k else "first answer",
                  [s for s, _ in filter(None, (series(g, f"eval/accuracy_round_{k}") for g in groups))], "%")
                 for k in range(rounds + 1)]
        made.append((figures.lines(out / "refine.png", "Held-out accuracy by feedback round", drawn),
                     "Held-out accuracy by feedback round"))
    seele = []
    for g in groups:  # SEELE's controller: does each round land nearer the target? (mean over the group's runs)
        by_iter: dict[int, list[float]] = {}
        for t in range(1, max(len(r.history) for r in g.runs)):
            ms = [r.history[t] for r in g.runs if t < len(r.history)]
            rounds = min(refine_rounds(m, "generate/round_", "_accuracy") for m in ms)
            if rounds:
                by_iter[t] = [sum(m[f"generate/round_{k}_accuracy"] or 0 for m in ms) / len(ms)
                              for k in range(1, rounds + 1)]
        if by_iter:
            seele.append((g.label, by_iter, next(m["generate/target"] for r in g.runs for m in r.history[1:])))
    if seele:
        title = "SEELE: sample accuracy per round"
        made.append((figures.per_round(out / "hints.png", title, [(lb, b) for lb, b, _ in seele], seele[0][2]), title))
    skips = []
    for g in groups:
        reasons = sorted({k for r in g.runs for m in r.history for k in m if k.startswith("pairs/skipped_")})
        s_any = [series(g, k) for k in reasons]
        x = sorted({t for s in s_any if s for t in s[0].x})
        if x:
            parts = {k[len("pairs/skipped_"):].replace("_", " "): [s[0].y[s[0].x.index(t)] if s and t in s[0].x else 0.0
                     for t in x] for k, s in zip(reasons, s_any)}
            skips.append((g.label, x, parts))
    if skips:
        title = "Prompts without a pair, by reason (mean over runs)"
        made.append((figures.stacked_bars(out / "skipped.png", title, skips, "prompts"), title))
    rates = []
    for g in groups:  # SEELE: each problem's hinting rate at the end of its iteration
        by_iter = {}
        for r in g.runs:
            for t in range(1, len(r.history)):
                path = r.path / f"iter_{t:02d}" / "generations.parquet"
                per_sample = _column(path, "next_rate")
                if per_sample is not None:
                    by_problem = dict(zip(_column(path, "prompt_id"), per_sample))
                    by_iter.setdefault(t, []).extend(float(v) for v in by_problem.values())
        if by_iter:
            rates.append((g.label, by_iter))
    if rates:
        title = "SEELE: hinting rate per problem"
        made.append((figures.histograms(out / "hint_rates.png", title, rates, "hinting rate", "problems",
                                        [k / 10 for k in range(11)]), title))
    hists = []
    for g in groups:
        if not any("judge/score_mean" in m for r in g.runs for m in r.history):
            continue
        by_iter: dict[int, list[float]] = {}
        for r in g.runs:
            for t in range(1, len(r.history)):
                scores = _column(r.path / f"iter_{t:02d}" / "judgments.parquet", "judgment_scores")
                if scores is not None:  # the LLM judge: every parsed judgment's score (None: dropped)
                    by_iter.setdefault(t, []).extend(
                        float(v) for vs in scores for v in (vs or []) if v is not None and v == v)
        if by_iter:
            hists.append((g.label, by_iter))
    if hists:
        title = "Judge scores of the training samples"
        made.append((figures.histograms(out / "judge_scores.png", title, hists, "score"), title))
    return made


def write_report(paths: list[str | Path], out: Path) -> tuple[Path, str]:
    """report.html (self-contained: the figures inlined) and the figures as PNG files in `out`; returns the HTML's
    path and the summary table (held-out rate per iteration and setting) as text."""
    import base64
    import html

    runs = [load_run(p) for p in find_runs(paths)]
    groups = group_runs(runs)
    out.mkdir(parents=True, exist_ok=True)
    key = headline(groups)
    table = summary_table(groups, key)
    made = _figures(groups, out)
    versions = [(g.label, r) for g in groups for r in g.runs]
    vkeys = [k for k in ("torch", "transformers", "trl", "datasets", "selfimprove", "python") if
             any(r.versions.get(k) for _, r in versions)]
    mixed = [g.label for g in groups if len({json.dumps({k: r.versions.get(k) for k in vkeys}) for r in g.runs}) > 1
             or any(r.restarts_with_other_versions for r in g.runs)]
    esc = html.escape
    rows = "".join(
        f"<tr><td>{esc(lab)}</td><td>{esc(str(r.path))}</td><td>{esc(str(r.config.get('seed', '-')))}</td>"
        f"<td>{len(r.history) - 1}</td>" + "".join(f"<td>{esc(str(r.versions.get(k) or '-'))}</td>" for k in vkeys)
        + "</tr>" for lab, r in versions)
    imgs = "".join(
        f'<figure><img src="data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}" alt="{esc(t)}">'
        f"<figcaption>{esc(t)} ({p.name})</figcaption></figure>" for p, t in made)
    warning = (f"<p><b>Warning:</b> runs of {esc(', '.join(mixed))} ran with different library versions (between "
               "runs, or a run resumed under other versions: see the run folders' versions.json).</p>") if mixed else ""
    how = ("mean ± half-width of the 95% Student-t interval across the runs of a setting (seeds)"
           if any(len(g.runs) > 1 for g in groups) else "")
    if any(len(g.runs) == 1 for g in groups):
        how += ("; " if how else "") + "one run: its value [95% bootstrap interval over held-out problems]"
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>selfimprove report</title>
<style>body{{font-family:sans-serif;max-width:1400px;margin:2em auto;padding:0 1em;color:#222}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:3px 8px;font-size:13px}}
figure{{margin:1.5em 0}}img{{max-width:100%}}pre{{background:#f6f6f6;padding:8px}}</style></head>
<body><h1>Self-improvement report</h1>
<p>{len(runs)} run(s) in {len(groups)} setting(s). Made by <code>python -m pipeline.report</code> from the runs'
metrics.json and parquet files.</p>
<h2>Held-out {esc(key.split('/')[-1])} per iteration (%)</h2>
<pre id="summary">{esc(table)}</pre><p>{esc(how)}. Iteration 0 is the starting model.</p>
{imgs}
<h2>Runs</h2>
<table><tr><th>setting</th><th>folder</th><th>seed</th><th>iterations</th>{''.join(f'<th>{k}</th>' for k in vkeys)}</tr>
{rows}</table>
{warning}
<script>/* for headless checks: how many figures the browser decoded */ window.addEventListener("load", () => {{
  const im = [...document.images];
  document.body.dataset.figuresShown = `${{im.filter(i => i.complete && i.naturalWidth > 0).length}} of ${{im.length}}`;
}});</script>
</body></html>
"""
    path = out / "report.html"
    atomic_write_text(path, page)
    return path, f"Held-out {key.split('/')[-1]} per iteration (%):\n{table}"


try:
    from hydra.experimental.callback import Callback
except ImportError:  # pragma: no cover (hydra-core is a dependency; keeps the report importable without it)
    Callback = object


FAILED = "failed.txt"  # in a sweep job's folder: the input error that stopped it (pipeline/__main__.py)


def mark_failed(job_dir: Path, error: str | None) -> None:
    """Mark a sweep job's folder as stopped by `error` (an input error), or clear the mark (None: it finished)."""
    path = Path(job_dir) / FAILED
    if error is None:
        path.unlink(missing_ok=True)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, error + "\n")


class SweepReport(Callback):
    """Hydra callback (conf/config.yaml): when a sweep ends, its report over every job that finished, and the
    summary table; then, when jobs of this sweep stopped on an input error (each printed its line and the sweep went
    on), one line naming them, and exit status 2."""

    def on_multirun_start(self, config, **kwargs) -> None:
        import time

        self.started = time.time()

    def on_multirun_end(self, config, **kwargs) -> None:
        import sys

        sweep = Path(config.hydra.sweep.dir)
        started = getattr(self, "started", 0.0)
        failed = [m.parent for m in sorted(sweep.rglob(FAILED)) if m.stat().st_mtime >= started]  # this sweep's
        try:
            runs = [r for r in find_runs([sweep]) if r not in failed]  # ReportError when no iteration finished
            if not runs:
                raise ReportError("no job of the sweep finished")
            path, table = write_report(runs, sweep / "report")
            print(f"\nSweep: {table}\n\nReport: {path}", flush=True)
        except ReportError as e:
            if not failed:  # else every job stopped on an input error: the line below says so
                print(f"sweep report not written: {e}", flush=True)
        except Exception as e:  # noqa: BLE001  (the jobs' results are all written; a plotting failure loses none)
            print(f"sweep report not written: {type(e).__name__}: {e}", flush=True)
        if failed:
            names = ", ".join(str(d.relative_to(sweep)) for d in failed)
            print(f"error: {len(failed)} of the sweep's jobs stopped on an input error (printed above; kept in "
                  f"{FAILED} in the job's folder): {names}. Fix it and rerun the same command: finished jobs are "
                  "read, not recomputed", file=sys.stderr, flush=True)
            sys.exit(2)


def main(argv: list[str] | None = None) -> int:
    import argparse
    import os
    import sys

    ap = argparse.ArgumentParser(prog="python -m pipeline.report", description=(
        "Figures and tables over finished runs: held-out accuracy per iteration (mean and 95%% interval across seeds), "
        "samples, pairs, DPO, lengths, judge scores. RUN is a run folder or a folder of runs (a sweep)."))
    ap.add_argument("runs", nargs="+", metavar="RUN")
    ap.add_argument("--out", type=Path, help="where report.html and the PNGs go (default: RUN/report for one RUN, "
                                             "else report/ in the folder the RUNs share)")
    a = ap.parse_args(argv)
    out = a.out or Path(os.path.commonpath([os.path.abspath(p) for p in a.runs])) / "report"
    try:
        runs = find_runs(a.runs)  # before --out is made: a mistyped run folder must not get a report/ folder
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ReportError(f"--out {out}: cannot make this folder ({e.strerror})") from e
        path, table = write_report(runs, out)  # the run folders found once (a sweep folder is walked once)
    except ReportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{table}\n\nReport: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
