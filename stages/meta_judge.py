"""Meta-judge: the model judges its own judgments (Meta-Rewarding, Wu et al. 2024, §3.2), which gives
preference pairs that train the judge.

For each prompt, the response whose judgments disagree most (the largest variance of valid judge scores)
is taken; every pair of its valid judgments is compared by the meta-judge (the `template`, with
{instruction}, {response}, {judgment_a}, {judgment_b}; "Winner: A/B/tie" as the last line) in both orders.
The meta-judge's position bias is measured over the whole iteration and corrected with the weights
w1 = wins_second / (wins_first + wins_second) for a win shown first and w2 = wins_first / (...) for a win
shown second; each response's judgments are then ranked by Elo fitted by maximum likelihood
(stages/compare.py: the same code as TPO's pairwise judge and the win-rate evaluation). Unparseable
verdicts are dropped and counted.

`judge_pairs`: chosen = the judgment with the highest Elo, rejected = the lowest (equal ratings: no pair);
a pair whose chosen judgment is longer than ``max_chosen_chars`` is dropped (the judge would learn to
write longer judgments). The prompt of a judge pair is the judge prompt itself, so DPO trains the model
as a judge in the same run that trains it as an actor; ``max_share`` caps their share of all pairs.

    from stages.meta_judge import MetaJudgeConfig, meta_judge, judge_pairs
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import ClassVar

from stages.compare import CompareConfig, tournament
from stages.judge import JudgeConfig, instruction_of, judge_messages
from stages.thoughts import judged_text


@dataclass
class MetaJudgeConfig(CompareConfig):
    SLOTS: ClassVar[tuple[str, ...]] = ("{instruction}", "{response}", "{judgment_a}", "{judgment_b}")
    WHAT: ClassVar[str] = "meta_judge.template (meta-judge template)"
    model: str = "current"  # current: M(t-1), the model being improved | initial: M0 | a path | py:module:fn
    max_chosen_chars: int = 700  # a judge pair whose chosen judgment is longer is dropped
    max_share: float = 0.2  # judge pairs are at most this share of all training pairs
    position_debias: bool = True  # w1/w2 weights (paper); false: both positions weigh the same

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.max_share < 1:
            raise ValueError(f"meta_judge.max_share must be in (0, 1), got {self.max_share}")
        if self.max_chosen_chars < 1:
            raise ValueError("meta_judge.max_chosen_chars must be >= 1")


def _variance(scores: list[float]) -> float:
    mean = sum(scores) / len(scores)
    return sum((s - mean) ** 2 for s in scores) / len(scores)


def select(judged: list[dict]) -> tuple[list[tuple[dict, list[int]]], dict]:
    """Per prompt, the response whose valid judge scores vary most, with the indices of its distinct valid
    judgments. A prompt whose responses all got unanimous scores (or fewer than 2 valid judgments) is
    skipped and counted."""
    by_prompt: dict[str, list[dict]] = {}
    for r in judged:
        by_prompt.setdefault(r["prompt_id"], []).append(r)
    out, stats = [], {"skipped_unanimous": 0, "skipped_too_few_judgments": 0}
    for pid, rs in by_prompt.items():
        best, best_var, best_idx = None, 0.0, []
        for r in sorted(rs, key=lambda r: r["sample_idx"]):
            seen, idx = set(), []
            for k, (text, score) in enumerate(zip(r["judgments"] or [], r["judgment_scores"] or [])):
                if score is not None and not (isinstance(score, float) and math.isnan(score)) and text.strip() not in seen:
                    seen.add(text.strip())
                    idx.append(k)
            if len(idx) < 2:
                continue
            var = _variance([r["judgment_scores"][k] for k in idx])
            if best is None or var > best_var:
                best, best_var, best_idx = r, var, idx
        if best is None:
            stats["skipped_too_few_judgments"] += 1
        elif best_var == 0:
            stats["skipped_unanimous"] += 1
        else:
            out.append((best, best_idx))
    return out, stats


def meta_judge(model_path: str, prompts: list[dict], judged: list[dict], cfg: MetaJudgeConfig,
               desc: str = "meta-judge") -> tuple[list[dict], dict]:
    """judged: the judge stage's records (judgments, judgment_scores per response). Returns one record per
    compared pair of judgments (both verdict texts, parsed verdicts, the combined outcome for judgment i,
    the judgments' scores and Elo ratings) and stats (position bias, w1/w2, unparseable verdicts, how often
    the meta-judge prefers the judgment that gave the higher score)."""
    instruction = {p["prompt_id"]: instruction_of(p["messages"]) for p in prompts}
    chosen, stats = select(judged)
    groups = [({"{instruction}": instruction[r["prompt_id"]], "{response}": judged_text(r)},
               [r["judgments"][k] for k in idx]) for r, idx in chosen]
    records, elo, t_stats = tournament(model_path, groups, cfg, cfg.position_debias, desc=desc)
    out = []
    for rec in records:
        r, idx = chosen[rec["group"]]
        i, j = idx[rec["i"]], idx[rec["j"]]
        out.append({"prompt_id": r["prompt_id"], "sample_idx": r["sample_idx"], "judgment_i": i, "judgment_j": j,
                    "score_i": r["judgment_scores"][i], "score_j": r["judgment_scores"][j],
                    "elo_i": elo[rec["group"]][rec["i"]], "elo_j": elo[rec["group"]][rec["j"]],
                    "verdict_ij": rec["verdict_xy"], "verdict_ji": rec["verdict_yx"],
                    "winner_ij": rec["winner_xy"], "winner_ji": rec["winner_yx"], "outcome_i": rec["score"]})
    differ = [o for o in out if o["score_i"] != o["score_j"] and o["outcome_i"] not in (None, 0.5)]
    higher = sum((o["outcome_i"] == 1.0) == (o["score_i"] > o["score_j"]) for o in differ)
    stats.update({"responses": len(chosen), "comparisons": len(out), "position_bias": t_stats["position_bias"],
                  "w1": t_stats["w1"], "w2": t_stats["w2"], "unparseable_verdicts": t_stats["unparseable_verdicts"],
                  "prefers_higher_score": higher / len(differ) if differ else None,
                  "decisive_on_different_scores": len(differ)})
    return out, stats


def judge_pairs(prompts: list[dict], judged: list[dict], meta: list[dict], judge_cfg: JudgeConfig,
                cfg: MetaJudgeConfig, actor_pairs: int, seed: int = 0) -> tuple[list[dict], dict]:
    """DPO records that train the judge: judge prompt -> best-rated vs worst-rated judgment of each
    meta-judged response, at most max_share of the final pairs (a seeded choice). Same columns as the actor
    pairs (stages/pairs.py), with pair_type "judge" and the judgments' Elo ratings as rewards."""
    instruction = {p["prompt_id"]: instruction_of(p["messages"]) for p in prompts}
    by_key = {(r["prompt_id"], r["sample_idx"]): r for r in judged}
    elo: dict[tuple, dict[int, float]] = {}
    for m in meta:
        e = elo.setdefault((m["prompt_id"], m["sample_idx"]), {})
        e[m["judgment_i"]], e[m["judgment_j"]] = m["elo_i"], m["elo_j"]
    out, stats = [], {"judge_pairs_tie": 0, "judge_pairs_too_long": 0}
    for key, ratings in elo.items():
        r = by_key[key]
        best, worst = max(ratings, key=ratings.get), min(ratings, key=ratings.get)
        if ratings[best] - ratings[worst] < 1e-6:
            stats["judge_pairs_tie"] += 1
            continue
        good, bad = r["judgments"][best], r["judgments"][worst]
        if len(good) > cfg.max_chosen_chars:
            stats["judge_pairs_too_long"] += 1
            continue
        out.append({"prompt_id": r["prompt_id"],
                    "prompt": judge_messages(judge_cfg, instruction[r["prompt_id"]], judged_text(r)),
                    "chosen": [{"role": "assistant", "content": good}], "rejected": [{"role": "assistant", "content": bad}],
                    "chosen_sample_idx": best, "rejected_sample_idx": worst,
                    "chosen_reward": ratings[best], "rejected_reward": ratings[worst], "pair_type": "judge",
                    "chosen_length": len(good), "rejected_length": len(bad), "rejected_unparsed": False,
                    "judged_sample_idx": r["sample_idx"],
                    "chosen_score": r["judgment_scores"][best], "rejected_score": r["judgment_scores"][worst]})
    room = math.floor(cfg.max_share * actor_pairs / (1 - cfg.max_share) + 1e-9)  # k <= share * (actor + k)
    random.Random(f"{seed}:judge_pairs").shuffle(out)
    stats.update({"judge_pairs_candidates": len(out), "judge_pairs_capped": max(0, len(out) - room)})
    out = sorted(out[:room], key=lambda p: p["prompt_id"])
    stats["judge_pairs"] = len(out)
    stats["judge_pairs_chosen_higher_score"] = sum(p["chosen_score"] > p["rejected_score"] for p in out)
    return out, stats


def add_judge_pairs(actor: list[dict], stats: dict, prompts: list[dict], judged: list[dict], meta: list[dict],
                    judge_cfg: JudgeConfig, cfg: MetaJudgeConfig, seed: int = 0) -> tuple[list[dict], dict]:
    """The actor pairs followed by the judge pairs (capped to cfg.max_share of the total), with both counts."""
    extra, judge_stats = judge_pairs(prompts, judged, meta, judge_cfg, cfg, len(actor), seed)
    return actor + extra, {**stats, **judge_stats, "actor_pairs": len(actor), "pairs": len(actor) + len(extra)}
