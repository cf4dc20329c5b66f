"""The shared pairwise pieces: Elo by maximum-likelihood Bradley-Terry, Meta-Rewarding's position-bias weights,
battle matrices from both-orders verdicts, and the tournament / pairwise judge built on them."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stages.compare import (ELO_SCALE, FIRST, SECOND, TIE, CompareConfig, PairwiseJudgeConfig, battle_matrix,
                            fill_pairwise, fit_elo, judge_pairwise, position_weights, tournament)

PAIRWISE = "I: {instruction}\nResponse A: {response_a}\nResponse B: {response_b}\nExplain your decision"


def _gap(elo, m, n):
    return (elo[m] - elo[n]) / ELO_SCALE  # back to Bradley-Terry strengths


def test_two_players_recover_the_log_odds():
    elo = fit_elo(np.array([[0.0, 3.0], [1.0, 0.0]]), prior=0)
    assert _gap(elo, 0, 1) == pytest.approx(math.log(3), abs=1e-9)
    assert sum(elo) / 2 == pytest.approx(1000)


def test_expected_counts_of_known_strengths_are_recovered_exactly():
    strengths = np.array([1.5, 0.0, -0.7, 0.4])  # B[m, n] = games * P(m beats n) is the MLE's fixed point
    p = 1 / (1 + np.exp(-(strengths[:, None] - strengths[None, :])))
    b = 10 * p * (1 - np.eye(4))
    elo = fit_elo(b, prior=0)
    for m in range(4):
        for n in range(4):
            assert _gap(elo, m, n) == pytest.approx(strengths[m] - strengths[n], abs=1e-8)


def test_three_players_satisfy_the_likelihood_equations():
    b = np.array([[0, 2, 4], [2, 0, 2], [0, 2, 0]], dtype=float)
    elo = fit_elo(b, prior=0)
    theta = np.array(elo) / ELO_SCALE
    p = 1 / (1 + np.exp(-(theta[:, None] - theta[None, :])))
    wins = b.sum(axis=1)
    assert np.allclose(wins, ((b + b.T) * p).sum(axis=1), atol=1e-9)  # observed = expected wins
    assert elo[0] > elo[1] > elo[2] and elo[1] == pytest.approx(1000)  # symmetric problem: the middle one is 1000


def test_symmetry_relabelling_and_reversal():
    rng = np.random.default_rng(0)
    b = rng.integers(0, 5, size=(5, 5)).astype(float) * (1 - np.eye(5))
    elo = np.array(fit_elo(b))
    perm = rng.permutation(5)
    assert np.allclose(np.array(fit_elo(b[np.ix_(perm, perm)])), elo[perm])  # relabelling permutes the ratings
    assert np.allclose(np.array(fit_elo(b.T)) - 1000, -(elo - 1000))  # every result reversed: ratings mirrored


def test_all_ties_and_no_battles_give_equal_ratings():
    assert fit_elo(np.full((4, 4), 0.5) * (1 - np.eye(4))) == pytest.approx([1000.0] * 4)
    assert fit_elo(np.zeros((3, 3))) == pytest.approx([1000.0] * 3)
    assert fit_elo(np.zeros((0, 0))) == []


def test_a_clean_sweep_stays_finite_and_ordered():
    b = np.array([[0, 1, 1], [0, 0, 1], [0, 0, 0]], dtype=float)
    elo = fit_elo(b)
    assert all(math.isfinite(e) for e in elo) and elo[0] > elo[1] > elo[2]


def test_position_weights_follow_the_paper():
    assert position_weights([FIRST] * 3 + [SECOND]) == (0.25, 0.75)  # w1 = second/(first+second)
    assert position_weights([TIE, None]) == (0.5, 0.5)
    assert position_weights([FIRST, SECOND]) == (0.5, 0.5)


def test_battle_matrix_weights_orders_ties_and_unparsed():
    # items 0 and 1: 0 wins when shown first (weight w1), tie when shown second; 1 vs 2: nothing parsed
    b = battle_matrix(3, [(0, 1, FIRST, TIE), (1, 2, None, None)], weights=(0.2, 0.8))
    assert b[0, 1] == pytest.approx(0.2 + 0.25) and b[1, 0] == pytest.approx(0.25)
    assert b[1, 2] == b[2, 1] == 0
    b = battle_matrix(2, [(0, 1, SECOND, FIRST)])  # 1 wins as second, then 1 wins as first
    assert b[1, 0] == pytest.approx(1.0) and b[0, 1] == 0


def test_a_judge_with_pure_position_bias_prefers_nobody_after_debiasing():
    groups = [("q", ["short", "a much longer answer", "mid length"])]
    cfg = CompareConfig(template=PAIRWISE)
    records, elo, stats = tournament("py:tests.fake_models:first_wins", groups, cfg, debias=True)
    assert len(records) == 3 and stats["position_bias"] == 1.0 and stats["w1"] == 0
    assert elo[0] == pytest.approx([1000.0] * 3)
    _, elo, _ = tournament("py:tests.fake_models:longer_wins", groups, cfg, debias=True)
    assert elo[0][1] > elo[0][2] > elo[0][0]  # the length-loving judge ranks by length, in both orders


def test_pairwise_judge_scores_responses_never_thoughts(tmp_path):
    prompts = [{"prompt_id": "p", "messages": [{"role": "user", "content": "Say hi"}]}]
    cands = [{"prompt_id": "p", "sample_idx": k, "completion": f"{t}\nResponse:\n{r}", "thought": t, "response": r,
              "parsed": ok} for k, (t, r, ok) in enumerate([("x" * 500, "hi", True), ("", "hello there", True),
                                                             ("", "", False)])]
    recs, stats = judge_pairwise("py:tests.fake_models:longer_wins", prompts, cands, PairwiseJudgeConfig(template=PAIRWISE))
    by = {r["sample_idx"]: r for r in recs}
    assert by[1]["reward"] > by[0]["reward"]  # the longer *response* wins although sample 0's thought is longer
    assert by[2]["status"] == "unparsed" and by[2]["reward"] is None and by[2]["judgments"] == []
    assert by[0]["judgment_scores"] == [0.0] and by[1]["judgment_scores"] == [1.0] and stats["judgments"] == 2


def test_fill_pairwise_fills_extra_fields_in_one_pass():
    text = fill_pairwise("{instruction}|{response}|{judgment_a}|{judgment_b}",
                         {"{instruction}": "do {response_a}", "{response}": "R"}, "A {judgment_b}", "B",
                         slots=("{instruction}", "{response}", "{judgment_a}", "{judgment_b}"))
    assert text == "do {response_a}|R|A {judgment_b}|B"  # braces inside the texts are left alone
