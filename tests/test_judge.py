"""LLM-as-a-Judge: score parsing, averaging with dropped judgments, the judge stage with a scripted model,
and the both-orders pairwise arithmetic."""

import pytest

from stages.compare import FIRST, SECOND, TIE, CompareConfig, both_orders, compare, parse_winner, win_rate
from stages.evaluate import judge_agreement
from stages.generate import GenerateConfig, generate
from tests.fake_models import score_of
from stages.judge import JudgeConfig, aggregate, judge, parse_score, score_stats

TEMPLATE = "Rate it.\nInstruction: {instruction}\nResponse: {response}\nAfter examining, say Score: N"


@pytest.mark.parametrize("text,expected", [
    ("Good answer.\nScore: 4", 4.0),
    ("Score: 0", 0.0),
    ("**Score:** 5", 5.0),
    ("Score: **3**", 3.0),
    ("score = 2", 2.0),
    ("Total score: 3.5", 3.5),
    ("Score: 4/5", 4.0),
    ("Score: [4]", 4.0),
    ("Relevant: +1\nScore: 2\nOn reflection it is better.\nScore: 3", 3.0),  # several: the last one wins
    ("SCORE:5 points", 5.0),
])
def test_parse_score_valid(text, expected):
    assert parse_score(text) == expected


@pytest.mark.parametrize("text", [
    "", "No score here.", "Score: four", "Score: 6", "Score: -1", "Score: 4/10", "Score:", "The score is high",
    "Score: 7\n", "Score: 5.5",
])
def test_parse_score_malformed_or_out_of_range(text):
    assert parse_score(text) is None


def test_parse_score_respects_configured_range():
    assert parse_score("Score: 8", 0, 10) == 8.0
    assert parse_score("Score: 8/10", 0, 10) == 8.0
    assert parse_score("Score: 0", 1, 10) is None


def test_aggregate_drops_unparseable_instead_of_scoring_them_low():
    assert aggregate([4.0, None, 2.0]) == 3.0
    assert aggregate([None, None]) is None
    assert aggregate([]) is None
    assert aggregate([5.0]) == 5.0


def test_score_stats_histogram_and_collapse():
    cfg = JudgeConfig(template=TEMPLATE, collapse_threshold=0.6)
    s = score_stats([5.0, 5.0, 5.0, 4.0], cfg)
    assert s["hist_5"] == 3 and s["hist_4"] == 1 and s["hist_0"] == 0
    assert s["top_share"] == 0.75 and s["collapsed"] is True
    assert score_stats([1.0, 5.0], cfg)["collapsed"] is False
    assert score_stats([], cfg)["score_mean"] is None and score_stats([], cfg)["collapsed"] is False


def test_judge_config_refuses_bad_values():
    with pytest.raises(ValueError, match="response"):
        JudgeConfig(template="only {instruction}")
    with pytest.raises(ValueError, match="num_judgments"):
        JudgeConfig(template=TEMPLATE, num_judgments=0)
    with pytest.raises(ValueError, match="temperature=0"):
        JudgeConfig(template=TEMPLATE, temperature=0, num_judgments=3)


def test_judge_stage_with_scripted_model():
    """The orchestration of judging: J judgments per response, dropped ones counted, mean of the valid ones,
    no score at all when no judgment parses, judge text kept."""
    prompts = [{"prompt_id": "p", "messages": [{"role": "user", "content": "Say something."}]}]
    cands = [{"prompt_id": "p", "sample_idx": i, "completion": c} for i, c in enumerate(
        ["one two three four five six", "one two three", "UNJUDGEABLE text", "a b c d e f g h i j k l m n o p"])]
    cfg = JudgeConfig(template=TEMPLATE, num_judgments=3)
    recs, stats = judge("py:tests.fake_models:checksum_judge", prompts, cands, cfg)
    score = [float(score_of(c["completion"])) for c in cands]
    assert [r["sample_idx"] for r in recs] == [0, 1, 2, 3]
    assert recs[0]["judgment_scores"] == [None, score[0], score[0]] and recs[0]["reward"] == score[0]  # dropped, not 0
    assert recs[1]["reward"] == score[1] and recs[1]["num_valid"] == 3
    assert recs[2]["reward"] is None and recs[2]["status"] == "unscored"
    assert recs[3]["judgment_scores"] == [None, score[3], score[3]]
    assert all(len(r["judgments"]) == 3 for r in recs)
    assert stats["judgments"] == 12 and stats["valid"] == 7 and stats["dropped_unparseable"] == 5
    assert stats["unscored_responses"] == 1
    assert sum(stats[f"hist_{k}"] for k in range(6)) == 7


def test_python_model_errors_are_clear():
    with pytest.raises(ValueError, match="cannot import"):
        generate("py:tests.fake_models:nope", [{"prompt_id": "a", "messages": []}], GenerateConfig(num_samples=1))
    with pytest.raises(ValueError, match="must return 2"):
        generate("py:tests.fake_models:always_one", [{"prompt_id": "a", "messages": []}], GenerateConfig(num_samples=2))


# ----------------------------------------------------------------------------- pairwise, both orders

@pytest.mark.parametrize("text,expected", [
    ("Winner: A", FIRST), ("winner: b", SECOND), ("Winner: tie", TIE), ("**Winner:** Response B", SECOND),
    ("Winner: A\nActually, Winner: B", SECOND), ("I like A.", None), ("", None), ("Winner: neither", TIE),
])
def test_parse_winner(text, expected):
    assert parse_winner(text) == expected


@pytest.mark.parametrize("ab,ba,expected", [
    (FIRST, SECOND, 1.0),    # X wins shown first, and wins shown second
    (SECOND, FIRST, 0.0),    # X loses both ways
    (FIRST, FIRST, 0.5),     # the judge always picks position A: position bias, a tie
    (SECOND, SECOND, 0.5),
    (TIE, TIE, 0.5),
    (FIRST, TIE, 1.0),       # a win and a tie: the decisive verdict counts
    (TIE, FIRST, 0.0),
    (FIRST, None, 1.0),      # one order unparseable: the other decides alone
    (None, FIRST, 0.0),
    (None, None, None),
])
def test_both_orders(ab, ba, expected):
    assert both_orders(ab, ba) == expected


def test_win_rate_arithmetic():
    r = win_rate([1.0, 1.0, 0.5, 0.0, None], [FIRST, SECOND, FIRST, FIRST, FIRST, SECOND, None, None])
    assert (r["wins"], r["ties"], r["losses"], r["no_verdict"]) == (2, 1, 1, 1)
    assert r["win_rate"] == pytest.approx(2.5 / 4)
    assert r["position_bias"] == pytest.approx(4 / 6) and r["unparseable_verdicts"] == 2
    assert win_rate([None])["win_rate"] is None


def test_compare_cancels_a_position_biased_judge():
    items = [("Do x.", "long response here", "short"), ("Do y.", "s", "longer one")]
    cfg = CompareConfig(template="I: {instruction}\nResponse A: {response_a}\nResponse B: {response_b}\nExplain your decision")
    recs, stats = compare("py:tests.fake_models:first_wins", items, cfg)
    assert [r["score"] for r in recs] == [0.5, 0.5] and stats["win_rate"] == 0.5 and stats["position_bias"] == 1.0
    recs, stats = compare("py:tests.fake_models:longer_wins", items, cfg)
    assert [r["score"] for r in recs] == [1.0, 0.0] and stats["position_bias"] == 0.5


def test_judge_agreement():
    assert judge_agreement([5, 1, 3], [1.0, 0.0, 0.5]) == 1.0      # scores order the rule outcomes exactly
    assert judge_agreement([1, 5], [1.0, 0.0]) == 0.0
    assert judge_agreement([3, 3], [1.0, 0.0]) == 0.5              # a tie in score counts half
    assert judge_agreement([None, 4, 2], [1.0, 1.0, 0.0]) == 1.0   # unscored responses are left out
    assert judge_agreement([4, 2], [1.0, 1.0]) is None             # no pair with different rule outcomes


def test_summary_warns_when_judge_scores_collapse():
    from pipeline.report import warnings_for

    m = {"iteration": 2, "judge/collapsed": True, "judge/top_share": 0.8, "eval/judge_collapsed": False}
    (w,) = warnings_for(m)
    assert "[iter 2] WARNING: judge scores collapsing" in w and "80.0%" in w and "training judgments" in w
    assert warnings_for({"iteration": 1, "judge_collapsed": False}) == []
