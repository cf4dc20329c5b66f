"""Pairs: turn scored completions into training data.

``rule: irpo`` — IRPO's preference pairs (Pang et al. 2024, §2). Per question: winners = distinct correct
completions (plus the gold solution when ``include_gold`` and the task has one, so the winner set is never
empty); losers = distinct incorrect completions (and unparseable ones when ``unparseable_as_loser``).
A question with no winner or no loser is skipped and counted. Pairs are built by walking both lists
together, restarting a list when it runs out, for K = ``pairs_per_prompt`` steps; the walk stops early at
lcm(|winners|, |losers|) steps, after which it would only repeat pairs (deviation: the paper does not say
how it avoids duplicates). A pair whose two sides are the same text is never emitted. ``max_pairs`` caps
the total (a seeded sample, keeping at least one pair per question where it can).

``rule: score`` — Self-Rewarding's pairs (Yuan et al. 2024, §2.4): per prompt, the response with the highest
judge score (``reward``, an average of judgments) is chosen and the one with the lowest is rejected; a
response without a score (no valid judgment) takes no part. Equal scores, or a gap below ``min_gap``,
give no pair (skipped and counted); among equally scored candidates for a side, a seeded draw picks one.

``rule: correct`` — the STaR / rejection-sampling fine-tuning baseline: every distinct correct
self-generated completion becomes an SFT example (prompt/completion), at most ``pairs_per_prompt`` per
question; the gold solution is added only if ``include_gold``.

Records use TRL's conversational format (prompt / chosen / rejected, or prompt / completion) plus
provenance columns; the returned stats say how many questions were skipped and why.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from dataclasses import dataclass

GOLD = -1  # sample_idx of the gold solution when it is used as a winner


@dataclass
class PairsConfig:
    rule: str = "irpo"  # irpo (correct vs incorrect) | score (best vs worst judge score) | correct (SFT: STaR)
    pairs_per_prompt: int = 10  # K (paper: 10 GSM8K, 20 ARC, 15 MATH)
    include_gold: bool = True  # add the gold solution to the winners (IRPO: yes)
    unparseable_as_loser: bool = True  # a completion with no parseable answer is a loser (reward 0)
    max_pairs: int | None = None  # cap on the total (None = no cap)
    min_gap: float = 0.0  # rule=score: a best-worst score gap below this gives no pair (a tie never does)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.rule not in ("irpo", "score", "correct"):
            raise ValueError(f"pairs.rule must be 'irpo', 'score' or 'correct', got {self.rule!r}")
        if self.min_gap < 0:
            raise ValueError(f"pairs.min_gap must be >= 0, got {self.min_gap}")
        if self.pairs_per_prompt < 1:
            raise ValueError(f"pairs.pairs_per_prompt (K) must be >= 1, got {self.pairs_per_prompt}")
        if self.max_pairs is not None and self.max_pairs < 1:
            raise ValueError(f"pairs.max_pairs must be >= 1 or null, got {self.max_pairs}")


def _distinct(items: list[tuple[int, str, float]]) -> list[tuple[int, str, float]]:
    seen, out = set(), []
    for idx, text, r in items:
        key = text.strip()
        if key and key not in seen:
            seen.add(key)
            out.append((idx, text, r))
    return out


def _cap(records: list[dict], max_pairs: int | None, seed: int) -> list[dict]:
    """At most max_pairs records, spread over questions: round-robin over questions in a seeded order."""
    if max_pairs is None or len(records) <= max_pairs:
        return records
    by_prompt: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        by_prompt[r["prompt_id"]].append(r)
    order = sorted(by_prompt)
    random.Random(seed).shuffle(order)
    out, depth = [], 0
    while len(out) < max_pairs:
        for pid in order:
            if depth < len(by_prompt[pid]) and len(out) < max_pairs:
                out.append(by_prompt[pid][depth])
        depth += 1
    keep = {id(r) for r in out}
    return [r for r in records if id(r) in keep]  # original order


def build_pairs(prompts: list[dict], candidates: list[dict], cfg: PairsConfig) -> tuple[list[dict], dict]:
    """prompts: records with prompt_id, messages, solution (or None).
    candidates: records with prompt_id, sample_idx, completion, reward (1 correct / 0 not; or a judge score,
    None = unscored), status. Returns (records, stats)."""
    by_prompt: dict[str, list[dict]] = defaultdict(list)
    for c in candidates:
        by_prompt[c["prompt_id"]].append(c)
    stats = {"prompts": len(prompts), "prompts_with_pairs": 0, "skipped_no_winner": 0, "skipped_no_loser": 0,
             "same_text": 0, "capped": 0, "gold_used": 0}
    if cfg.rule == "score":
        stats.update({"skipped_too_few_scored": 0, "skipped_tie": 0, "skipped_small_gap": 0})
    records: list[dict] = []
    for p in prompts:
        cands = sorted(by_prompt.get(p["prompt_id"], []), key=lambda c: c["sample_idx"])
        if cfg.rule == "score":
            new = _score_pair(p, cands, cfg, stats)
            stats["prompts_with_pairs"] += bool(new)
            records += new
            continue
        winners = _distinct([(c["sample_idx"], c["completion"], c["reward"]) for c in cands if c["reward"] > 0])
        losers = _distinct([(c["sample_idx"], c["completion"], c["reward"]) for c in cands if c["reward"] <= 0
                            and (cfg.unparseable_as_loser or c["status"] != "unparseable")])
        gold = p.get("solution")
        if cfg.include_gold and gold and gold.strip() not in {w[1].strip() for w in winners}:
            winners.append((GOLD, gold, 1.0))
        rng = random.Random(f"{cfg.seed}:{p['prompt_id']}")
        rng.shuffle(winners)
        rng.shuffle(losers)
        new = _irpo_pairs(p, winners, losers, cfg, stats) if cfg.rule == "irpo" else _sft_examples(p, winners, cfg, stats)
        if new:
            stats["prompts_with_pairs"] += 1
            stats["gold_used"] += any(r.get("chosen_sample_idx", r.get("sample_idx")) == GOLD for r in new)
        records += new
    capped = _cap(records, cfg.max_pairs, cfg.seed)
    stats["capped"] = len(records) - len(capped)
    stats["pairs"] = len(capped)
    return capped, stats


def _irpo_pairs(p: dict, winners: list, losers: list, cfg: PairsConfig, stats: dict) -> list[dict]:
    if not winners:
        stats["skipped_no_winner"] += 1
        return []
    if not losers:
        stats["skipped_no_loser"] += 1
        return []
    steps = min(cfg.pairs_per_prompt, math.lcm(len(winners), len(losers)))
    out = []
    for i in range(steps):
        (wi, wt, wr), (li, lt, lr) = winners[i % len(winners)], losers[i % len(losers)]
        if wt.strip() == lt.strip():
            stats["same_text"] += 1
            continue
        out.append(_pair(p, (wi, wt, wr), (li, lt, lr)))
    return out


def _pair(p: dict, chosen: tuple[int, str, float], rejected: tuple[int, str, float]) -> dict:
    """A DPO record in TRL's conversational format, with provenance (sample ids, rewards)."""
    (wi, wt, wr), (li, lt, lr) = chosen, rejected
    return {"prompt_id": p["prompt_id"], "prompt": p["messages"],
            "chosen": [{"role": "assistant", "content": wt}], "rejected": [{"role": "assistant", "content": lt}],
            "chosen_sample_idx": wi, "rejected_sample_idx": li,
            "chosen_reward": float(wr), "rejected_reward": float(lr)}


def _sft_examples(p: dict, winners: list, cfg: PairsConfig, stats: dict) -> list[dict]:
    if not winners:
        stats["skipped_no_winner"] += 1
    return [{
        "prompt_id": p["prompt_id"],
        "prompt": p["messages"],
        "completion": [{"role": "assistant", "content": wt}],
        "sample_idx": wi, "reward": float(wr),
    } for wi, wt, wr in winners[: cfg.pairs_per_prompt]]


def _score_pair(p: dict, cands: list[dict], cfg: PairsConfig, stats: dict) -> list[dict]:
    scored = _distinct([(c["sample_idx"], c["completion"], c["reward"]) for c in cands if c["reward"] is not None])
    if len(scored) < 2:
        stats["skipped_too_few_scored"] += 1
        return []
    rng = random.Random(f"{cfg.seed}:{p['prompt_id']}")
    rng.shuffle(scored)  # equal scores: a seeded choice, not always the first sample
    best, worst = max(scored, key=lambda x: x[2]), min(scored, key=lambda x: x[2])
    if best[2] == worst[2]:
        stats["skipped_tie"] += 1
        return []
    if best[2] - worst[2] < cfg.min_gap:
        stats["skipped_small_gap"] += 1
        return []
    return [_pair(p, best, worst)]
