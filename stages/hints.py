"""SEELE's hint controller (Li et al. 2025, arXiv 2509.06923; ../shared/METHODS.md "SEELE"): each training problem
gets the first part of its reference solution as a hint, at a hinting rate p in [0, 1] chosen so that the model's
accuracy on it lands near a target a* (0.5: the most (correct, wrong) pairs, n(n-1)a(1-a) of n samples).

Per problem, before each round of sampling: the (p, accuracy) points seen so far (accuracy averaged over rounds at
the same p), plus the anchors (0, 0) and (1, 1) unless p = 0 or p = 1 was tried, are fitted with the
three-parameter logistic of item response theory, f(p) = b + (1 - b) / (1 + exp(-k (p + mu))), by bounded least
squares (scipy's curve_fit, "trf"), and f is inverted at a*. A fit that fails keeps the previous rate (and is
counted by the caller).

In the pipeline (``curriculum=seele``, or the preset ``method=seele``): the generate stage runs `seele_rounds` — m
rounds of n samples per problem, each round's hint the assistant's first words (the model continues them), each
sample checked by the task's checker so the next round can be fitted — and the rate refitted on all m rounds is
carried to the problem's next appearance (`carried_rates`). Every sample is one record (prompt_id, round,
hint, hint_rate, continuation, completion = hint + continuation, round_accuracy, next_rate): the per-problem
(rate, accuracy) history. Each finished round is kept in the stage's scratch folder, so a killed run resumes at
the round it was in. Pairs are made only within one hint (`hinted_pairs`): prompt = the bare problem,
chosen = hint + a correct continuation, rejected = hint + a wrong one — the hint's tokens are the same on both
sides, so they cancel in DPO's margin, and the NLL term on the chosen side imitates them. Evaluation never
sees a hint.

Deviation from the paper (which appends the hint to the problem and trains with GRPO): the hint is the start of
the answer, not part of the question, so the DPO prompt stays the bare problem (METHODS.md, "Adapting it to
iterative DPO").
"""

from __future__ import annotations

import json
import math
import statistics
import time
import warnings
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

UNITS = ("steps", "tokens")
SAMPLE_STRIDE = 1000  # sample_idx of a hinted sample: round * SAMPLE_STRIDE + its index in the round


@dataclass
class CurriculumConfig:
    """``curriculum``: where each training problem's difficulty is set. kind none: the bare problem; seele: SEELE's
    adaptive hints (rounds of generate.num_samples samples each)."""

    kind: str = "none"  # none | seele
    rounds: int = 4  # m: rounds of sampling per problem and iteration (the paper: 4 beat 3 and 6)
    target: float = 0.5  # a*: the accuracy each problem is steered to (the paper: 0.5 beat 0.25 and 0.75)
    unit: str = "steps"  # what a hint counts: solution steps (lines) | tokens of the model's tokenizer

    def __post_init__(self) -> None:
        if self.kind not in ("none", "seele"):
            raise ValueError(f"curriculum.kind must be 'none' or 'seele', got {self.kind!r}")
        if not isinstance(self.rounds, int) or self.rounds < 1:
            raise ValueError(f"curriculum.rounds must be an integer >= 1, got {self.rounds!r}")
        if not 0 < self.target < 1:
            raise ValueError(f"curriculum.target must be in (0, 1), got {self.target}")
        if self.unit not in UNITS:
            raise ValueError(f"curriculum.unit must be one of {list(UNITS)}, got {self.unit!r}")


BOUNDS = ([0.0, -1.0, 0.0], [50.0, 0.0, 0.99])  # k, mu, b (METHODS.md: the paper's sensible bounds)
START = (10.0, -0.5, 0.0)


@dataclass(frozen=True)
class Curve:
    """f(p) = b + (1 - b) / (1 + exp(-k (p + mu))): accuracy against hinting rate. b is the floor (guessing),
    -mu the rate of the steepest rise, k its steepness."""

    k: float
    mu: float
    b: float

    def __call__(self, p: float) -> float:
        return self.b + (1 - self.b) / (1 + math.exp(-self.k * (p + self.mu)))

    def rate_for(self, target: float) -> float:
        """The rate where f reaches `target`, clipped to [0, 1]; 0 when the floor already reaches it."""
        if self.b >= target:
            return 0.0
        if target >= 1 or self.k <= 0:
            return 1.0
        p = -self.mu - math.log((1 - self.b) / (target - self.b) - 1) / self.k
        return min(1.0, max(0.0, p))


def logistic3(p, k, mu, b):
    import numpy as np

    return b + (1 - b) / (1 + np.exp(-k * (np.asarray(p, dtype=float) + mu)))


def fit(observations: list[tuple[float, float]]) -> Curve | None:
    """The 3PL curve through a problem's (rate, accuracy) observations (one per round; rounds at the same rate are
    averaged) and the anchors (0, 0), (1, 1) where those rates were not tried; None when the fit fails."""
    import numpy as np
    from scipy.optimize import curve_fit

    by_rate: dict[float, list[float]] = {}
    for p, acc in observations:
        by_rate.setdefault(round(float(p), 6), []).append(float(acc))
    points = {p: sum(a) / len(a) for p, a in by_rate.items()}
    points.setdefault(0.0, 0.0)
    points.setdefault(1.0, 1.0)
    xs, ys = zip(*sorted(points.items()))
    try:
        with warnings.catch_warnings():  # "covariance could not be estimated": expected with 3-4 points
            warnings.simplefilter("ignore")
            params, _ = curve_fit(logistic3, np.array(xs), np.array(ys), p0=START, bounds=BOUNDS, method="trf",
                                  maxfev=2000)
    except (RuntimeError, ValueError):  # no convergence / degenerate input
        return None
    if not np.all(np.isfinite(params)):
        return None
    return Curve(*(float(v) for v in params))


def next_rate(observations: list[tuple[float, float]], target: float, previous: float) -> tuple[float, bool]:
    """The rate for the next round: the fitted curve inverted at `target`; (previous, True) when the fit fails."""
    curve = fit(observations)
    if curve is None:
        return previous, True
    return curve.rate_for(target), False


def solution_steps(solution: str) -> list[str]:
    """A reference solution's steps: its non-empty lines (the built-in tasks write "Step k: ..." lines and end with
    the answer line, which is the last step)."""
    return [line for line in solution.splitlines() if line.strip()]


def pessimistic_rate(n_steps: int) -> float:
    """Where a problem starts before any observation: every step but the last, (n - 1) / n."""
    return (n_steps - 1) / n_steps if n_steps > 0 else 0.0


def _count(rate: float, n: int) -> int:
    """round(rate x n), halves up (Python's round() would take 2.5 to 2)."""
    return min(n, max(0, math.floor(rate * n + 0.5)))


def hint(solution: str, rate: float, unit: str = "steps", tokenizer=None) -> str:
    """The first round(rate x |y|) parts of the solution y, counted in steps (lines) or in tokens of `tokenizer`."""
    if unit == "steps":
        steps = solution_steps(solution)
        return "\n".join(steps[: _count(rate, len(steps))])
    if unit == "tokens":
        if tokenizer is None:
            raise ValueError("hint unit 'tokens' needs the model's tokenizer")
        ids = tokenizer(solution, add_special_tokens=False)["input_ids"]
        return tokenizer.decode(ids[: _count(rate, len(ids))], skip_special_tokens=True)
    raise ValueError(f"hint unit: 'steps' or 'tokens', not {unit!r}")


def check_task(task) -> None:
    """SEELE needs a reference solution for every training problem: refused otherwise, before any model loads."""
    missing = [p.id for p in task.train if not (p.solution or "").strip()]
    if missing:
        raise ValueError(f"curriculum=seele: task {task.name} has {len(missing)} of {len(task.train)} training "
                         f"problems without a reference solution (e.g. {missing[0]}); its hints are the first steps "
                         f"of that solution: use a task with solutions (task.solution_field for a file)")


# --------------------------------------------------------------------------- the rounds of one iteration


def carried_rates(earlier: list[list[dict]]) -> dict[str, float]:
    """Each problem's rate at the end of its latest iteration (earlier generations tables, oldest first)."""
    rates: dict[str, float] = {}
    for records in earlier:
        for r in records:
            if r.get("next_rate") is not None:
                rates[r["prompt_id"]] = float(r["next_rate"])
    return rates


def hinted_messages(messages: list[dict], hint_text: str) -> list[dict]:
    """The problem with the hint as the start of the assistant's answer (the model continues it); no hint: as is."""
    return messages + [{"role": "assistant", "content": hint_text}] if hint_text else messages


def _load_round(path: Path) -> list[dict] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):  # not written yet, or torn by a kill: the round runs again
        return None


def seele_rounds(prompts: list[dict], carried: dict[str, float], cfg: CurriculumConfig, num_samples: int,
                 sample: Callable[[list[dict], int], list[dict]], check: Callable[[list[tuple[str, str]]], list],
                 scratch: Path | None = None, tokenizer=None) -> tuple[list[dict], dict]:
    """One iteration of SEELE on `prompts` (records with prompt_id, messages, solution). sample(prompts, round) ->
    generate's records (num_samples continuations per prompt); check([(prompt_id, text)]) -> Verdicts.
    carried: rates from earlier iterations (a problem not in it starts at the pessimistic rate). scratch: a folder
    keeping each finished round (round_<r>.json), read back instead of sampling it again. Returns (one record per
    sample, stats)."""
    steps = {p["prompt_id"]: len(solution_steps(p["solution"])) for p in prompts}
    rate = {pid: carried.get(pid, pessimistic_rate(n)) for pid, n in steps.items()}
    obs: dict[str, list[tuple[float, float]]] = defaultdict(list)
    records: list[dict] = []
    stats: dict = {"rounds": cfg.rounds, "target": cfg.target, "problems": len(prompts),
                   "carried": sum(pid in carried for pid in steps), "fit_failures": 0, "tokens": 0, "truncated": 0}
    t0 = time.time()
    for r in range(1, cfg.rounds + 1):
        if r > 1:  # the controller: fit this iteration's observations, invert at the target
            for pid in rate:
                rate[pid], failed = next_rate(obs[pid], cfg.target, rate[pid])
                stats["fit_failures"] += failed
        path = scratch / f"round_{r}.json" if scratch else None
        done = _load_round(path) if path else None
        if done is None:
            done = _round(prompts, rate, r, cfg, num_samples, sample, check, tokenizer)
            if path:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(path.name + ".tmp")
                tmp.write_text(json.dumps(done))
                tmp.replace(path)
        else:
            stats["resumed_rounds"] = stats.get("resumed_rounds", 0) + 1
        acc = {}
        for rec in done:
            acc.setdefault(rec["prompt_id"], rec["round_accuracy"])
            rate[rec["prompt_id"]] = rec["hint_rate"]  # as sampled (a resumed round: as it was sampled then)
        for pid, a in acc.items():
            obs[pid].append((rate[pid], a))
        records += done
        stats["tokens"] += sum(rec["num_tokens"] for rec in done)
        stats["truncated"] += sum(rec["finish_reason"] == "length" for rec in done)
        rates = [rate[pid] for pid in acc]
        stats[f"round_{r}_hint_rate"] = statistics.fmean(rates) if rates else None
        stats[f"round_{r}_accuracy"] = statistics.fmean(acc.values()) if acc else None
        stats[f"round_{r}_tracking_error"] = statistics.fmean(abs(a - cfg.target) for a in acc.values()) if acc else None
    nxt = {}
    for pid in rate:  # the rate carried to the problem's next iteration: the refit on all rounds
        nxt[pid], failed = next_rate(obs[pid], cfg.target, rate[pid])
        stats["fit_failures"] += failed
    for rec in records:
        rec["next_rate"] = nxt[rec["prompt_id"]]
    final = sorted(nxt.values())
    if final:
        q1, q2, q3 = statistics.quantiles(final, n=4, method="inclusive") if len(final) > 1 else final * 3
        stats.update({"next_rate_mean": statistics.fmean(final), "next_rate_p25": q1, "next_rate_median": q2,
                      "next_rate_p75": q3, "unhinted_share": sum(v == 0 for v in final) / len(final)})
    per_problem = [[a for _, a in o] for o in obs.values()]
    stats["mixed_share"] = sum(any(0 < a < 1 for a in accs) for accs in per_problem) / max(len(per_problem), 1)
    stats["seconds"] = round(time.time() - t0, 2)
    return records, stats


def _round(prompts, rate, r, cfg, num_samples, sample, check, tokenizer) -> list[dict]:
    hints = {p["prompt_id"]: hint(p["solution"], rate[p["prompt_id"]], cfg.unit, tokenizer) for p in prompts}
    gens = sample([{**p, "messages": hinted_messages(p["messages"], hints[p["prompt_id"]])} for p in prompts], r)
    full = [hints[g["prompt_id"]] + g["completion"] if hints[g["prompt_id"]] else g["completion"] for g in gens]
    verdicts = check([(g["prompt_id"], text) for g, text in zip(gens, full)])
    correct: dict[str, list[bool]] = defaultdict(list)
    for g, v in zip(gens, verdicts):
        correct[g["prompt_id"]].append(v.status == "correct")
    out = []
    for g, text in zip(gens, full):
        pid = g["prompt_id"]
        out.append({"prompt_id": pid, "sample_idx": r * SAMPLE_STRIDE + int(g["sample_idx"]), "round": r,
                    "hint_rate": float(rate[pid]), "hint": hints[pid], "continuation": g["completion"],
                    "completion": text, "round_accuracy": sum(correct[pid]) / len(correct[pid]),
                    "num_tokens": int(g.get("num_tokens", 0)), "finish_reason": g.get("finish_reason", "stop")})
    return out


# --------------------------------------------------------------------------- pairs within one hint


def hinted_pairs(prompts: list[dict], judged: list[dict], cfg) -> tuple[list[dict], dict]:
    """IRPO's pairs (stages/pairs.py, `cfg`: PairsConfig) built separately within each (problem, hint) group of
    SEELE's samples, so both sides of a pair start with the same hint; the prompt is the bare problem. At most K
    (cfg.pairs_per_prompt) per problem, drawn round-robin over its groups in a seeded order; then cfg.max_pairs.
    With include_gold, the gold solution (which starts with every hint of its problem) is a winner in each group."""
    from stages.pairs import GOLD, _cap, build_pairs

    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for j in judged:
        groups[(j["prompt_id"], j["hint"])].append(j)
    by_id = {p["prompt_id"]: p for p in prompts}
    keys = sorted(groups, key=lambda k: (k[0], len(k[1])))
    gid = {k: f"{k[0]}#{i}" for i, k in enumerate(keys)}
    pseudo = [{**by_id[k[0]], "prompt_id": gid[k]} for k in keys]
    cands = [{**j, "prompt_id": gid[k]} for k in keys for j in groups[k]]
    made, inner = build_pairs(pseudo, cands, replace(cfg, max_pairs=None))
    back = {gid[k]: k for k in keys}
    rate = {gid[k]: groups[k][0]["hint_rate"] for k in keys}
    per_problem: dict[str, list[dict]] = defaultdict(list)
    for rec in made:
        per_problem[back[rec["prompt_id"]][0]].append(rec)
    records: list[dict] = []
    for pid in [p["prompt_id"] for p in prompts]:  # K per problem: the cap's seeded round-robin over its hints
        for rec in _cap(per_problem[pid], cfg.pairs_per_prompt, f"{cfg.seed}:{pid}:hints"):
            g = rec["prompt_id"]
            records.append({**rec, "prompt_id": pid, "hint": back[g][1], "hint_rate": rate[g]})
    capped = _cap(records, cfg.max_pairs, cfg.seed)
    with_pairs = {r["prompt_id"] for r in capped}
    all_correct = set(by_id) - {j["prompt_id"] for j in judged if j["reward"] <= 0}
    stats = {"prompts": len(prompts), "prompts_with_pairs": len(with_pairs),
             "skipped_no_loser": len(all_correct - with_pairs), "skipped_no_winner": len(set(by_id) - with_pairs - all_correct),
             "hint_groups": len(keys), "same_text": inner["same_text"], "capped": len(records) - len(capped),
             "gold_used": len({r["prompt_id"] for r in capped if r["chosen_sample_idx"] == GOLD}),
             "hinted_pairs": sum(bool(r["hint"]) for r in capped), "pairs": len(capped)}
    stats["unhinted_pairs"] = stats["pairs"] - stats["hinted_pairs"]
    return capped, stats
