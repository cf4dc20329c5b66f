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

Length control for ``rule: score`` (``length_control``, with ``rho``; length = characters of the judged
response — the text after the thought, or the whole completion without thoughts):

* ``zscore`` — TPO (Wu et al. 2024, §2.3): s = z(score) - rho * z(length), both standardised within the
  prompt's scored samples (a constant gives z = 0); chosen = max s, rejected = min s.
* ``bands`` — Meta-Rewarding (Wu et al. 2024, §3.1): with S_max, S_min the best and worst scores,
  chosen = the shortest response scoring in [S_max - rho (S_max - S_min), S_max], rejected = the longest in
  [S_min, S_min + rho (S_max - S_min)].

rho = 0 is plain best-vs-worst in both. Either way the chosen response must score strictly higher than the
rejected one (by at least ``min_gap``): length alone never makes a pair. The stats report the mean chosen
and rejected lengths and their gap, the number to watch when tuning rho (the TPO paper tunes it until
chosen responses are not longer than rejected ones on average).

Outputs whose thought/response split failed (``parsed: false``, TPO) are never judged; with
``max_unparsed_share`` > 0 each prompt that has one adds a pair (its best response vs that output), at most
that share of all pairs (a seeded choice): the model learns to keep the format.

Every record has ``pair_type: actor``; Meta-Rewarding's judge pairs (stages/meta_judge.py) are ``judge``.

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

from stages.thoughts import judged_text

GOLD = -1  # sample_idx of the gold solution when it is used as a winner


def no_gold_notice(task, cfg: "PairsConfig") -> list[str]:
    """One line when IRPO would add gold solutions to the winners but the task has none (its winners are then only
    the model's own correct samples): a notice, not an error."""
    if cfg.rule == "irpo" and cfg.include_gold and not any(p.solution for p in task.train):
        return [f"note: task {task.name} gives no gold solutions: IRPO's gold-in-winners (pairs.include_gold) is off "
                f"for it; the winners are the model's own correct samples"]
    return []


@dataclass
class PairsConfig:
    rule: str = "irpo"  # irpo (correct vs incorrect) | score (best vs worst judge score) | correct (SFT: STaR)
    pairs_per_prompt: int = 10  # K (paper: 10 GSM8K, 20 ARC, 15 MATH)
    include_gold: bool = True  # add the gold solution to the winners (IRPO: yes)
    unparseable_as_loser: bool = True  # a completion with no parseable answer is a loser (reward 0)
    max_pairs: int | None = None  # cap on the total (None = no cap)
    min_gap: float = 0.0  # rule=score: a best-worst score gap below this gives no pair (a tie never does)
    length_control: str = "none"  # rule=score: none | zscore (TPO) | bands (Meta-Rewarding)
    rho: float = 0.0  # length-control strength (TPO: 0..0.5; Meta-Rewarding: 0, 0.32, 0.32, 0.4 per iteration)
    max_unparsed_share: float = 0.0  # rule=score: share of pairs that may have an unparsed output as rejected (TPO: 0.1)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.rule not in ("irpo", "score", "correct"):
            raise ValueError(f"pairs.rule must be 'irpo', 'score' or 'correct', got {self.rule!r}")
        if self.min_gap < 0:
            raise ValueError(f"pairs.min_gap must be >= 0, got {self.min_gap}")
        if self.pairs_per_prompt < 1:
            raise ValueError(f"pairs.pairs_per_prompt (K) must be >= 1, got {self.pairs_per_prompt}")
        if self.length_control not in ("none", "zscore", "bands"):
            raise ValueError(f"pairs.length_control must be 'none', 'zscore' or 'bands', got {self.length_control!r}")
        if not 0 <= self.rho <= 1:
            raise ValueError(f"pairs.rho must be in [0, 1], got {self.rho}")
        if self.length_control == "none" and self.rho:
            raise ValueError("pairs.rho needs pairs.length_control=zscore or bands")
        if not 0 <= self.max_unparsed_share < 1:
            raise ValueError(f"pairs.max_unparsed_share must be in [0, 1), got {self.max_unparsed_share}")
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


def _cap(records: list[dict], max_pairs: int | None, seed: int | str) -> list[dict]:
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
        stats.update({"skipped_too_few_scored": 0, "skipped_tie": 0, "skipped_small_gap": 0,
                      "unparsed_pairs": 0, "unparsed_dropped": 0})
    records: list[dict] = []
    unparsed: list[dict] = []
    for p in prompts:
        cands = sorted(by_prompt.get(p["prompt_id"], []), key=lambda c: c["sample_idx"])
        if cfg.rule == "score":
            new = _score_pair(p, cands, cfg, stats)
            stats["prompts_with_pairs"] += bool(new)
            records += new
            unparsed += _unparsed_pair(p, cands, cfg)
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
    if unparsed:  # at most max_unparsed_share of the final pairs: k <= share * (n + k)
        room = math.floor(cfg.max_unparsed_share * len(capped) / (1 - cfg.max_unparsed_share) + 1e-9)
        random.Random(f"{cfg.seed}:unparsed").shuffle(unparsed)
        stats["unparsed_pairs"], stats["unparsed_dropped"] = min(room, len(unparsed)), max(0, len(unparsed) - room)
        keep = {id(r) for r in unparsed[:room]}
        capped += [r for r in unparsed if id(r) in keep]
    if cfg.rule == "score":
        stats.update(length_stats(capped))
    stats["pairs"] = len(capped)
    return capped, stats


def length_stats(pairs: list[dict]) -> dict:
    """Mean chosen / rejected response lengths (characters) and the share of pairs whose chosen is longer."""
    if not pairs:
        return {"chosen_chars": None, "rejected_chars": None, "length_gap": None, "chosen_longer_share": None}
    c = [r["chosen_length"] for r in pairs]
    rj = [r["rejected_length"] for r in pairs]
    return {"chosen_chars": sum(c) / len(c), "rejected_chars": sum(rj) / len(rj),
            "length_gap": (sum(c) - sum(rj)) / len(c), "chosen_longer_share": sum(a > b for a, b in zip(c, rj)) / len(c)}


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
            "chosen_reward": float(wr), "rejected_reward": float(lr), "pair_type": "actor"}


def _sft_examples(p: dict, winners: list, cfg: PairsConfig, stats: dict) -> list[dict]:
    if not winners:
        stats["skipped_no_winner"] += 1
    return [{
        "prompt_id": p["prompt_id"],
        "prompt": p["messages"],
        "completion": [{"role": "assistant", "content": wt}],
        "sample_idx": wi, "reward": float(wr),
    } for wi, wt, wr in winners[: cfg.pairs_per_prompt]]


def _z(values: list[float]) -> list[float]:
    mean = sum(values) / len(values)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    return [(v - mean) / sd if sd > 0 else 0.0 for v in values]


def _score_pair(p: dict, cands: list[dict], cfg: PairsConfig, stats: dict) -> list[dict]:
    seen, scored = set(), []
    for c in cands:  # distinct texts with a score (an unparsed or unjudged output has none)
        if c["reward"] is not None and c["completion"].strip() and c["completion"].strip() not in seen:
            seen.add(c["completion"].strip())
            scored.append(c)
    if len(scored) < 2:
        stats["skipped_too_few_scored"] += 1
        return []
    rng = random.Random(f"{cfg.seed}:{p['prompt_id']}")
    rng.shuffle(scored)  # equal keys: a seeded choice, not always the first sample
    length = {id(c): len(judged_text(c)) for c in scored}
    if cfg.length_control == "zscore":
        s = dict(zip(map(id, scored), (zs - cfg.rho * zl for zs, zl in zip(
            _z([c["reward"] for c in scored]), _z([length[id(c)] for c in scored])))))
        best, worst = max(scored, key=lambda c: s[id(c)]), min(scored, key=lambda c: s[id(c)])
    elif cfg.length_control == "bands":
        hi, lo = max(c["reward"] for c in scored), min(c["reward"] for c in scored)
        band = cfg.rho * (hi - lo)
        best = min((c for c in scored if c["reward"] >= hi - band), key=lambda c: length[id(c)])
        worst = max((c for c in scored if c["reward"] <= lo + band and c is not best), key=lambda c: length[id(c)],
                    default=best)
    else:
        best, worst = max(scored, key=lambda c: c["reward"]), min(scored, key=lambda c: c["reward"])
    if best["reward"] <= worst["reward"]:  # all equal, or length control picked a pair of equal scores
        stats["skipped_tie"] += 1
        return []
    if best["reward"] - worst["reward"] < cfg.min_gap:
        stats["skipped_small_gap"] += 1
        return []
    return [_pair(p, _side(best), _side(worst)) | {"chosen_length": length[id(best)], "rejected_length": length[id(worst)],
                                                "rejected_unparsed": False}]


def _side(c: dict) -> tuple[int, str, float]:
    return c["sample_idx"], c["completion"], c["reward"]


def _unparsed_pair(p: dict, cands: list[dict], cfg: PairsConfig) -> list[dict]:
    """The prompt's best-scored response vs one of its unparsed outputs (seeded), or nothing."""
    bad = [c for c in cands if c.get("parsed") is False and c["completion"].strip()]
    scored = [c for c in cands if c["reward"] is not None]
    if not cfg.max_unparsed_share or not bad or not scored:
        return []
    rng = random.Random(f"{cfg.seed}:{p['prompt_id']}:unparsed")
    best = max(scored, key=lambda c: (c["reward"], -len(judged_text(c))))
    worst = rng.choice(bad)
    return [_pair(p, _side(best), (worst["sample_idx"], worst["completion"], 0.0))
            | {"chosen_length": len(judged_text(best)), "rejected_length": len(worst["completion"]), "rejected_unparsed": True}]
