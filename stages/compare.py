"""Compare: pairwise judging of two responses to the same instruction, in both orders.

A judge model reads the instruction and two responses labelled A and B (the pairwise `template`, with
{instruction}, {response_a}, {response_b}) and ends with "Winner: A", "Winner: B" or "Winner: tie".
Judges prefer a position, so every comparison is asked twice, with the responses swapped, and the two
verdicts are combined (`both_orders`): a response wins only when it wins in both orders (or in one order
with a tie in the other); opposite verdicts — the judge just preferred a position — are a tie. A verdict
that cannot be parsed is dropped; with one order left, that order decides alone; with none, the comparison
has no outcome and is counted apart. `position_bias` is the share of decisive verdicts that chose the
response shown first (0.5 = none).

Used by the win rate of M(t) against M0 in the evaluation, and meant to serve every pairwise judge.

    from stages.compare import CompareConfig, compare
    outcomes, stats = compare("path/to/judge", [("instr", "response of M1", "response of M0")], cfg)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from stages.generate import GenerateConfig, generate

FIRST, SECOND, TIE = "first", "second", "tie"
_WINNER = re.compile(r"(?i)winner\s*(?:\*\*)?\s*[:=]\s*(?:\*\*)?\s*(?:response\s*)?\(?\s*(a|b|tie|none|neither|both)\b")


@dataclass
class CompareConfig:
    template: str  # {instruction}, {response_a}, {response_b}
    system_prompt: str = ""
    temperature: float = 0.0  # 0 = greedy verdicts
    max_new_tokens: int = 128
    batch_size: int = 8
    seed: int = 0
    dtype: str = "auto"
    device: str = "auto"

    def __post_init__(self) -> None:
        missing = [k for k in ("{instruction}", "{response_a}", "{response_b}") if k not in self.template]
        if missing:
            raise ValueError(f"pairwise template must contain {missing}")
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


def fill_pairwise(template: str, instruction: str, a: str, b: str) -> str:
    """The pairwise prompt (plain replacement: braces inside responses are left alone)."""
    return template.replace("{instruction}", instruction).replace("{response_a}", a).replace("{response_b}", b)


def compare(model_path: str, items: list[tuple[str, str, str]], cfg: CompareConfig,
            desc: str = "compare") -> tuple[list[dict], dict]:
    """items: (instruction, response X, response Y). Returns one record per item (both verdict texts, the
    parsed verdicts, X's combined score) and the win-rate stats of X against Y."""
    sys_msg = [{"role": "system", "content": cfg.system_prompt}] if cfg.system_prompt else []
    requests = []
    for i, (instr, x, y) in enumerate(items):
        for order, (a, b) in (("xy", (x, y)), ("yx", (y, x))):
            requests.append({"prompt_id": f"{i}:{order}",
                             "messages": sys_msg + [{"role": "user", "content": fill_pairwise(cfg.template, instr, a, b)}]})
    gen = GenerateConfig(num_samples=1, temperature=cfg.temperature, max_new_tokens=cfg.max_new_tokens,
                         batch_size=cfg.batch_size, seed=cfg.seed, dtype=cfg.dtype, device=cfg.device)
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
