"""Compare: pairwise judging of two responses to the same instruction, in both orders.

A judge model reads the instruction and two responses labelled A and B (the pairwise `template`, with
{instruction}, {response_a}, {response_b}) and ends with "Winner: A", "Winner: B" or "Winner: tie".
Judges prefer a position, so every comparison is asked twice, with the responses swapped, and the two
verdicts are combined (`both_orders`): a response wins only when it wins in both orders (or in one order
with a tie in the other); opposite verdicts — the judge just preferred a position — are a tie. A verdict
that cannot be parsed is dropped; with one order left, that order decides alone; with none, the comparison
has no outcome and is counted apart. `position_bias` is the share of decisive verdicts that chose the
response shown first (0.5 = none).

Elo (`fit_elo`): several items compared pairwise (K responses to one prompt, N judgments of one response)
are ranked by a Bradley-Terry model fitted by maximum likelihood over a battle matrix B, where B[m, n] is
the (weighted) number of times m beat n and a tie counts half a win for each side:
P(m beats n) = 1 / (1 + exp(-(θm - θn))), reported on the Elo scale (400/ln 10 · θ, mean 1000). A small
Gaussian prior keeps the fit finite when one item wins every battle. Position bias is corrected with the
weights of Meta-Rewarding (Wu et al. 2024, §3.2; `position_weights`): a win in the first position counts
w1 = wins_second / (wins_first + wins_second), a win in the second position w2 = wins_first / (...), so a
judge that favours a position has those wins discounted.

One piece of code for every pairwise judgement: the win rate of M(t) against M0 in the evaluation, TPO's
pairwise judge (`judge_pairwise`: all pairs of a prompt's responses, Elo as the reward) and the
Meta-Rewarding meta-judge (stages/meta_judge.py, comparing judgments).

    from stages.compare import CompareConfig, compare
    outcomes, stats = compare("path/to/judge", [("instr", "response of M1", "response of M0")], cfg)
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from stages.generate import Engine, generate

FIRST, SECOND, TIE = "first", "second", "tie"
_WINNER = re.compile(r"(?i)winner\s*(?:\*\*)?\s*[:=]\s*(?:\*\*)?\s*(?:response\s*)?\(?\s*(a|b|tie|none|neither|both)\b")


@dataclass
class CompareConfig:
    # the placeholders the template must hold; the last two receive the compared items (A, then B)
    SLOTS: ClassVar[tuple[str, ...]] = ("{instruction}", "{response_a}", "{response_b}")
    WHAT: ClassVar[str] = "pairwise template"
    template: str  # {instruction}, {response_a}, {response_b}
    system_prompt: str = ""
    temperature: float = 0.0  # 0 = greedy verdicts
    max_new_tokens: int = 128
    batch_size: int = 8
    seed: int = 0
    engine: Engine = field(default_factory=Engine)  # the run's engine (set by the pipeline)

    def __post_init__(self) -> None:
        missing = [k for k in self.SLOTS if k not in self.template]
        if missing:
            raise ValueError(f"{self.WHAT} must contain {missing}")
        if self.temperature < 0 or self.max_new_tokens < 1 or self.batch_size < 1:
            raise ValueError("pairwise temperature must be >= 0 and max_new_tokens, batch_size >= 1")


def parse_winner(text: str) -> str | None:
    """FIRST (A), SECOND (B), TIE, or None when the verdict line is missing. The last verdict line wins."""
    found = _WINNER.findall(text or "")
    if not found:
        return None
    v = found[-1].lower()
    return FIRST if v == "a" else SECOND if v == "b" else TIE


def both_orders(ab: str | None, ba: str | None) -> float | None:
    """Score of response X (1 win, 0.5 tie, 0 loss) from the verdict with X shown first (`ab`) and the
    verdict with X shown second (`ba`); None when neither verdict parsed."""
    as_x = {FIRST: 1.0, TIE: 0.5, SECOND: 0.0}
    points = [as_x[ab]] if ab is not None else []
    if ba is not None:
        points.append(1.0 - as_x[ba])
    if not points:
        return None
    if len(points) == 1:
        return points[0]
    if points[0] == points[1]:
        return points[0]
    if 0.5 in points:  # a win/loss in one order, a tie in the other: the decisive one counts
        return next(p for p in points if p != 0.5)
    return 0.5  # opposite verdicts: position preference, not quality


def win_rate(scores: list[float | None], verdicts: list[str | None] = ()) -> dict:
    """Arithmetic of a head-to-head: wins, ties, losses, win rate = (wins + ties / 2) / decided."""
    decided = [s for s in scores if s is not None]
    wins, losses = sum(s == 1.0 for s in decided), sum(s == 0.0 for s in decided)
    ties = len(decided) - wins - losses
    decisive = [v for v in verdicts if v in (FIRST, SECOND)]
    return {"comparisons": len(scores), "wins": wins, "ties": ties, "losses": losses,
            "no_verdict": len(scores) - len(decided),
            "win_rate": (wins + 0.5 * ties) / len(decided) if decided else None,
            "position_bias": sum(v == FIRST for v in decisive) / len(decisive) if decisive else None,
            "unparseable_verdicts": sum(v is None for v in verdicts)}


def fill_pairwise(template: str, context: str | dict, a: str, b: str,
                  slots: tuple[str, ...] = CompareConfig.SLOTS) -> str:
    """The pairwise prompt: `context` (the instruction, or {placeholder: text}) and the two items in the last
    two `slots`. One pass over the template, so braces inside the texts are left alone."""
    values = dict(context) if isinstance(context, dict) else {"{instruction}": context}
    values.update({slots[-2]: a, slots[-1]: b})
    pattern = re.compile("|".join(re.escape(k) for k in sorted(values, key=len, reverse=True)))
    return pattern.sub(lambda m: values[m.group(0)], template)


def compare(model_path: str, items: list[tuple[str | dict, str, str]], cfg: CompareConfig,
            desc: str = "compare") -> tuple[list[dict], dict]:
    """items: (instruction or {placeholder: text}, item X, item Y). Returns one record per item (both verdict
    texts, the parsed verdicts, X's combined score) and the win-rate stats of X against Y."""
    sys_msg = [{"role": "system", "content": cfg.system_prompt}] if cfg.system_prompt else []
    requests = []
    for i, (context, x, y) in enumerate(items):
        for order, (a, b) in (("xy", (x, y)), ("yx", (y, x))):
            text = fill_pairwise(cfg.template, context, a, b, cfg.SLOTS)
            requests.append({"prompt_id": f"{i}:{order}", "messages": sys_msg + [{"role": "user", "content": text}]})
    gen = cfg.engine.sampling(num_samples=1, temperature=cfg.temperature, max_new_tokens=cfg.max_new_tokens,
                              batch_size=cfg.batch_size, seed=cfg.seed)
    outs, _ = generate(model_path, requests, gen, desc=desc)
    text = {o["prompt_id"]: o["completion"] for o in outs}
    records, scores, verdicts = [], [], []
    for i in range(len(items)):
        xy, yx = text[f"{i}:xy"], text[f"{i}:yx"]
        v_xy, v_yx = parse_winner(xy), parse_winner(yx)
        score = both_orders(v_xy, v_yx)
        records.append({"verdict_xy": xy, "verdict_yx": yx, "winner_xy": v_xy, "winner_yx": v_yx, "score": score})
        scores.append(score)
        verdicts += [v_xy, v_yx]
    return records, win_rate(scores, verdicts)


# --------------------------------------------------------------------------- Elo (Bradley-Terry, max. likelihood)


def position_weights(verdicts: list[str | None]) -> tuple[float, float]:
    """Meta-Rewarding's weights (w1 for a win shown first, w2 for a win shown second) from all verdicts of a
    set: w1 = wins_second / (wins_first + wins_second), w2 = wins_first / (...). (0.5, 0.5) without bias or
    without decisive verdicts."""
    first, second = sum(v == FIRST for v in verdicts), sum(v == SECOND for v in verdicts)
    if first + second == 0:
        return 0.5, 0.5
    return second / (first + second), first / (first + second)


def battle_matrix(n: int, battles: list[tuple[int, int, str | None, str | None]],
                  weights: tuple[float, float] = (0.5, 0.5)) -> np.ndarray:
    """B[m, k] = weighted wins of item m over item k. battles: (i, j, verdict with i shown first, verdict
    with j shown first); an unparsed verdict (None) adds nothing, a tie half a win to each side (with the
    mean of the two weights)."""
    w1, w2 = weights
    tie = (w1 + w2) / 2
    b = np.zeros((n, n))
    for i, j, v_ij, v_ji in battles:
        for first, second, v in ((i, j, v_ij), (j, i, v_ji)):
            if v == FIRST:
                b[first, second] += w1
            elif v == SECOND:
                b[second, first] += w2
            elif v == TIE:
                b[first, second] += tie / 2
                b[second, first] += tie / 2
    return b


ELO_SCALE = 400 / math.log(10)


def fit_elo(b: np.ndarray, prior: float = 0.01) -> list[float]:
    """Elo ratings (mean 1000) maximising the Bradley-Terry likelihood of battle matrix `b` (with ties as half
    wins), with a Gaussian prior of precision `prior` on the strengths so that an item that won every battle
    gets a large but finite rating. Damped Newton's method on a strictly convex objective, to 1e-10."""
    b = np.asarray(b, dtype=float)
    n = b.shape[0]
    if n == 0:
        return []
    games = b + b.T
    theta = np.zeros(n)
    for _ in range(100):
        p = 1 / (1 + np.exp(-(theta[:, None] - theta[None, :])))  # p[m, k] = P(m beats k)
        grad = (b - games * p).sum(axis=1) - prior * theta  # gradient of the log-likelihood + log-prior
        w = games * p * (1 - p)
        hess = np.diag(w.sum(axis=1)) - w + prior * np.eye(n)  # minus the Hessian: positive definite
        step = np.linalg.lstsq(hess, grad, rcond=None)[0]  # prior=0: singular along a common shift
        step *= min(1.0, 2.0 / max(np.abs(step).max(), 1e-300))  # damped: no overshoot when one item wins all
        theta += step
        if np.abs(step).max() < 1e-10:
            break
    return [float(1000 + ELO_SCALE * (t - theta.mean())) for t in theta]


@dataclass
class PairwiseJudgeConfig(CompareConfig):
    """TPO's pairwise judge: every pair of a prompt's responses compared in both orders, Elo as the score."""
    WHAT: ClassVar[str] = "judge.template (pairwise template)"
    kind: str = "pairwise"
    model: str = "current"  # current: M(t) | initial: M0 | a path | py:module:function
    position_debias: bool = True  # Meta-Rewarding's w1/w2 weights; false: every verdict weighs the same

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.kind != "pairwise":
            raise ValueError(f"judge.kind must be 'pairwise' here, got {self.kind!r}")


def tournament(model_path: str, groups: list[tuple[str | dict, list[str]]], cfg: CompareConfig, debias: bool = True,
               desc: str = "compare") -> tuple[list[dict], list[list[float]], dict]:
    """All pairs within each group compared in both orders, then Elo per group. groups: (context, items).
    Returns (one record per comparison: group, i, j, verdict texts and parsed verdicts), the Elo ratings of
    each group's items, and stats (position bias, weights, unparseable verdicts)."""
    pairs = [(g, i, j) for g, (_, items) in enumerate(groups) for i, j in itertools.combinations(range(len(items)), 2)]
    outcomes, stats = compare(model_path, [(groups[g][0], groups[g][1][i], groups[g][1][j]) for g, i, j in pairs],
                              cfg, desc=desc) if pairs else ([], win_rate([]))
    records = [{"group": g, "i": i, "j": j, **o} for (g, i, j), o in zip(pairs, outcomes)]
    verdicts = [v for r in records for v in (r["winner_xy"], r["winner_yx"])]
    weights = position_weights(verdicts) if debias else (0.5, 0.5)
    elo = []
    for g, (_, items) in enumerate(groups):
        mine = [(r["i"], r["j"], r["winner_xy"], r["winner_yx"]) for r in records if r["group"] == g]
        elo.append(fit_elo(battle_matrix(len(items), mine, weights)))
    return records, elo, {"comparisons": len(records), "position_bias": stats["position_bias"],
                          "unparseable_verdicts": stats["unparseable_verdicts"], "w1": weights[0], "w2": weights[1]}


def judge_pairwise(model_path: str, prompts: list[dict], candidates: list[dict], cfg: PairwiseJudgeConfig,
                   desc: str = "judge") -> tuple[list[dict], dict]:
    """TPO's pairwise judge, with the records and stats of the pointwise judge (stages/judge.py): per prompt,
    the judged candidates (``response``, or the completion; unparsed outputs are not judged) are compared in
    all pairs, both orders, and each gets its Elo rating as ``reward``. ``judgments`` holds the verdict texts
    of the comparisons it took part in, ``judgment_scores`` its points in each (1 / 0.5 / 0 after combining
    both orders; None when neither verdict parsed). A prompt with one judged candidate gives no reward."""
    from stages.judge import SCORED, UNPARSED, UNSCORED, instruction_of
    from stages.thoughts import judged_text

    instruction = {p["prompt_id"]: instruction_of(p["messages"]) for p in prompts}
    groups, members = [], []
    for pid in dict.fromkeys(c["prompt_id"] for c in candidates):
        judged = [c for c in candidates if c["prompt_id"] == pid and c.get("parsed", True)]
        if len(judged) >= 2:
            groups.append((instruction[pid], [judged_text(c) for c in judged]))
            members.append(judged)
    records, elo, stats = tournament(model_path, groups, cfg, cfg.position_debias, desc=desc)
    extra: dict[tuple, dict] = {}
    for g, cands in enumerate(members):
        for k, c in enumerate(cands):
            extra[(c["prompt_id"], c["sample_idx"])] = {"reward": elo[g][k], "judgments": [], "judgment_scores": []}
    for r in records:
        cands = members[r["group"]]
        for me, score in ((r["i"], r["score"]), (r["j"], None if r["score"] is None else 1 - r["score"])):
            e = extra[(cands[me]["prompt_id"], cands[me]["sample_idx"])]
            e["judgments"] += [r["verdict_xy"], r["verdict_yx"]]
            e["judgment_scores"].append(score)
    out = []
    for c in candidates:
        e = extra.get((c["prompt_id"], c["sample_idx"]), {"reward": None, "judgments": [], "judgment_scores": []})
        out.append({**c, **e, "num_valid": sum(s is not None for s in e["judgment_scores"]),
                    "status": UNPARSED if not c.get("parsed", True) else SCORED if e["reward"] is not None else UNSCORED})
    return out, {"responses": len(out), "judgments": 2 * stats["comparisons"],
                 "valid": 2 * stats["comparisons"] - stats["unparseable_verdicts"],
                 "dropped_unparseable": stats["unparseable_verdicts"],
                 "unscored_responses": sum(r["status"] == UNSCORED for r in out),
                 "unparsed_responses": sum(r["status"] == UNPARSED for r in out),
                 "position_bias": stats["position_bias"], "w1": stats["w1"], "w2": stats["w2"]}
