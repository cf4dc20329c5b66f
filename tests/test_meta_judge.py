"""Meta-Rewarding's meta-judge: which response's judgments are compared, the Elo ranking of judgments, the
judge pairs (chosen = best judgment, length filter, share cap) and the meta-judge statistics."""

from __future__ import annotations

import re

import pytest

from stages.judge import JudgeConfig
from stages.meta_judge import MetaJudgeConfig, judge_pairs, meta_judge, select

META = ("I: {instruction}\nR: {response}\nJudgment A: {judgment_a}\nJudgment B: {judgment_b}\nExplain your decision")
JUDGE = JudgeConfig(template="Rate.\nInstruction: {instruction}\nResponse: {response}\nAfter examining", num_judgments=3)
PROMPTS = [{"prompt_id": f"p{i}", "messages": [{"role": "user", "content": f"Question {i}"}]} for i in range(3)]


def _judged(pid, sample, scores, texts=None):
    texts = texts or [("why " * (k + 1)) + f"\nScore: {s}" for k, s in enumerate(scores)]
    return {"prompt_id": pid, "sample_idx": sample, "completion": f"answer {pid}/{sample}", "judgments": texts,
            "judgment_scores": scores, "reward": None}


def test_select_takes_the_most_disputed_response_per_prompt():
    judged = [_judged("p0", 0, [3, 3, 3]), _judged("p0", 1, [1, 5, 3]), _judged("p0", 2, [2, 4, None]),
              _judged("p1", 0, [4, 4, 4]), _judged("p1", 1, [2, 2, None]),  # unanimous everywhere
              _judged("p2", 0, [None, 3, None])]  # one valid judgment
    chosen, stats = select(judged)
    assert [(r["prompt_id"], r["sample_idx"], idx) for r, idx in chosen] == [("p0", 1, [0, 1, 2])]
    assert stats == {"skipped_unanimous": 1, "skipped_too_few_judgments": 1}


def test_select_ignores_duplicate_and_unparsed_judgments():
    r = _judged("p0", 0, [1, None, 1, 4], texts=["same\nScore: 1", "no score", "same\nScore: 1", "other\nScore: 4"])
    chosen, _ = select([r])
    assert chosen[0][1] == [0, 3]


def test_meta_judge_ranks_judgments_and_measures_itself():
    judged = [_judged("p0", 0, [1, 5, 3]), _judged("p1", 0, [2, 0, 4])]
    cfg = MetaJudgeConfig(template=META)
    recs, stats = meta_judge("py:tests.fake_models:longer_judgment_wins", PROMPTS, judged, cfg)
    assert len(recs) == 6 and stats["comparisons"] == 6 and stats["responses"] == 2
    assert stats["position_bias"] == 0.5 and (stats["w1"], stats["w2"]) == (0.5, 0.5)  # no bias: equal weights
    r = next(x for x in recs if x["prompt_id"] == "p0" and (x["judgment_i"], x["judgment_j"]) == (0, 2))
    assert r["outcome_i"] == 0.0 and r["elo_j"] > r["elo_i"]  # judgment 2 is longer: it wins both orders
    # the longer judgment (j > i) always wins; it gave the higher score in p0 (0,1) (0,2), p1 (0,2) (1,2)
    assert stats["decisive_on_different_scores"] == 6 and stats["prefers_higher_score"] == pytest.approx(4 / 6)


def test_meta_judge_with_pure_position_bias_ranks_nothing():
    judged = [_judged("p0", 0, [1, 5, 3])]
    recs, stats = meta_judge("py:tests.fake_models:first_wins", PROMPTS, judged, MetaJudgeConfig(template=META))
    assert stats["position_bias"] == 1.0 and stats["w1"] == 0
    assert [r[k] for r in recs for k in ("elo_i", "elo_j")] == pytest.approx([1000.0] * 6)
    pairs, pstats = judge_pairs(PROMPTS, judged, recs, JUDGE, MetaJudgeConfig(template=META, max_share=0.5), 10)
    assert pairs == [] and pstats["judge_pairs_tie"] == 1


def test_judge_pairs_train_the_judge_prompt_on_best_vs_worst_judgment():
    judged = [_judged("p0", 0, [1, 5, 3]), _judged("p1", 0, [2, 0, 4])]
    cfg = MetaJudgeConfig(template=META, max_share=0.5)
    recs, _ = meta_judge("py:tests.fake_models:longer_judgment_wins", PROMPTS, judged, cfg)
    pairs, stats = judge_pairs(PROMPTS, judged, recs, JUDGE, cfg, actor_pairs=10)
    assert len(pairs) == 2 and stats["judge_pairs"] == 2
    p = next(x for x in pairs if x["prompt_id"] == "p0")
    assert p["pair_type"] == "judge" and p["chosen_sample_idx"] == 2 and p["rejected_sample_idx"] == 0
    assert p["prompt"] == [{"role": "user", "content": "Rate.\nInstruction: Question 0\nResponse: answer p0/0\nAfter examining"}]
    assert p["chosen"][0]["content"] == judged[0]["judgments"][2] and p["chosen_reward"] > p["rejected_reward"]


def test_judge_pairs_length_filter_and_share_cap():
    judged = [_judged(f"p{i}", 0, [1, 5, 3]) for i in range(3)]
    recs, _ = meta_judge("py:tests.fake_models:longer_judgment_wins", PROMPTS, judged, MetaJudgeConfig(template=META))
    short = MetaJudgeConfig(template=META, max_chosen_chars=10, max_share=0.5)
    pairs, stats = judge_pairs(PROMPTS, judged, recs, JUDGE, short, actor_pairs=10)
    assert pairs == [] and stats["judge_pairs_too_long"] == 3
    capped = MetaJudgeConfig(template=META, max_share=0.2)  # 8 actor pairs: at most 2 judge pairs (2/10 = 20%)
    pairs, stats = judge_pairs(PROMPTS, judged, recs, JUDGE, capped, actor_pairs=8)
    assert len(pairs) == 2 and stats["judge_pairs_capped"] == 1 and stats["judge_pairs_candidates"] == 3
    assert judge_pairs(PROMPTS, judged, recs, JUDGE, capped, actor_pairs=0)[0] == []


def test_meta_judge_config_refuses_bad_values():
    with pytest.raises(ValueError, match=re.escape("meta_judge.template (meta-judge template) must contain")):
        MetaJudgeConfig(template="{instruction} {response_a} {response_b}")
    with pytest.raises(ValueError, match="max_share"):
        MetaJudgeConfig(template=META, max_share=1.0)
