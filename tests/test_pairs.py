"""Unit tests for stages/pairs.py: IRPO preference pairs and the STaR (rule: correct) SFT examples."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest
import yaml

from stages.pairs import GOLD, PairsConfig, build_pairs

CONF = Path(__file__).resolve().parents[1] / "conf" / "pairs"


def prompt(pid: str, solution: str | None = None) -> dict:
    return {"prompt_id": pid, "messages": [{"role": "user", "content": f"question {pid}?"}], "solution": solution}


def cand(pid: str, idx: int, text: str, status: str) -> dict:
    return {"prompt_id": pid, "sample_idx": idx, "completion": text, "reward": 1.0 if status == "correct" else 0.0,
            "status": status}


def cands(pid: str, correct: list[str] = (), incorrect: list[str] = (), unparseable: list[str] = ()) -> list[dict]:
    out, idx = [], 0
    for status, texts in (("correct", correct), ("incorrect", incorrect), ("unparseable", unparseable)):
        for t in texts:
            out.append(cand(pid, idx, t, status))
            idx += 1
    return out


def text(side: list[dict]) -> str:
    assert isinstance(side, list) and len(side) == 1 and side[0]["role"] == "assistant"
    return side[0]["content"]


def pair_key(r: dict) -> tuple[str, str, str]:
    return r["prompt_id"], text(r["chosen"]).strip(), text(r["rejected"]).strip()


def irpo(**kw) -> PairsConfig:
    return PairsConfig(rule="irpo", **kw)


def assert_valid_pairs(records: list[dict]) -> None:
    keys = [pair_key(r) for r in records]
    assert len(keys) == len(set(keys)), "a pair was emitted twice"
    for r in records:
        assert text(r["chosen"]).strip() != text(r["rejected"]).strip()
        assert r["chosen_reward"] == 1.0 and r["rejected_reward"] == 0.0


# --------------------------------------------------------------------------- ties and skips


def test_all_correct_is_skipped_no_loser():
    ps = [prompt("a", solution="Step 1: 1 + 1 = 2\nAnswer: 2")]
    recs, stats = build_pairs(ps, cands("a", correct=["Answer: 2", "1+1=2\nAnswer: 2"]), irpo())
    assert recs == []
    assert stats["skipped_no_loser"] == 1 and stats["skipped_no_winner"] == 0
    assert stats["prompts_with_pairs"] == 0 and stats["pairs"] == 0


def test_all_wrong_without_gold_is_skipped_no_winner():
    ps = [prompt("a", solution=None), prompt("b", solution="")]
    cs = cands("a", incorrect=["Answer: 3", "Answer: 4"]) + cands("b", incorrect=["Answer: 5"])
    recs, stats = build_pairs(ps, cs, irpo())
    assert recs == []
    assert stats["skipped_no_winner"] == 2 and stats["skipped_no_loser"] == 0


def test_all_wrong_with_gold_but_include_gold_off_is_skipped_no_winner():
    recs, stats = build_pairs([prompt("a", "Answer: 2")], cands("a", incorrect=["Answer: 3"]), irpo(include_gold=False))
    assert recs == [] and stats["skipped_no_winner"] == 1


def test_all_wrong_with_gold_pairs_gold_as_chosen():
    gold = "Step 1: 1 + 1 = 2\nAnswer: 2"
    wrong = ["Answer: 3", "Answer: 4", "Answer: 5"]
    recs, stats = build_pairs([prompt("a", gold)], cands("a", incorrect=wrong), irpo(pairs_per_prompt=10))
    assert len(recs) == 3  # 1 winner x 3 losers: lcm 3 < K
    assert all(text(r["chosen"]) == gold and r["chosen_sample_idx"] == GOLD == -1 for r in recs)
    assert sorted(text(r["rejected"]) for r in recs) == wrong
    assert sorted(r["rejected_sample_idx"] for r in recs) == [0, 1, 2]
    assert stats["gold_used"] == 1 and stats["prompts_with_pairs"] == 1 and stats["pairs"] == 3
    assert_valid_pairs(recs)


def test_prompt_without_candidates_is_skipped():
    recs, stats = build_pairs([prompt("a", "Answer: 2"), prompt("b")], [], irpo())
    assert recs == []
    assert stats["skipped_no_loser"] == 1 and stats["skipped_no_winner"] == 1 and stats["prompts"] == 2


# --------------------------------------------------------------------------- never the same text on both sides


def test_duplicate_samples_never_make_identical_or_repeated_pairs():
    cs = cands("a", correct=["Answer: 2", "Answer: 2", "  Answer: 2\n"], incorrect=["Answer: 3", "Answer: 3 "])
    recs, stats = build_pairs([prompt("a")], cs, irpo(pairs_per_prompt=10))
    assert [pair_key(r) for r in recs] == [("a", "Answer: 2", "Answer: 3")]  # 1 distinct winner x 1 distinct loser
    assert_valid_pairs(recs)


def test_gold_identical_to_a_correct_sample_is_not_added_twice():
    gold = "Step 1: 1 + 1 = 2\nAnswer: 2"
    cs = cands("a", correct=[gold + "\n"], incorrect=["Answer: 3", "Answer: 4"])
    recs, stats = build_pairs([prompt("a", gold)], cs, irpo(pairs_per_prompt=10))
    assert len(recs) == 2  # 1 winner (sample 0 == gold) x 2 losers
    assert all(r["chosen_sample_idx"] == 0 for r in recs)
    assert stats["gold_used"] == 0
    assert_valid_pairs(recs)


def test_same_text_scored_both_ways_is_never_a_pair():
    # the same text as a winner and as a loser (a flaky judge): that pair is dropped and counted
    cs = [cand("a", 0, "Answer: 2", "correct"), cand("a", 1, "Answer: 2", "incorrect")]
    recs, stats = build_pairs([prompt("a")], cs, irpo())
    assert recs == [] and stats["same_text"] == 1
    cs.append(cand("a", 2, "Answer: 9", "incorrect"))
    recs, stats = build_pairs([prompt("a")], cs, irpo())
    assert [pair_key(r) for r in recs] == [("a", "Answer: 2", "Answer: 9")]
    assert stats["same_text"] == 1


def test_empty_completions_are_ignored():
    cs = cands("a", correct=["", "   "], incorrect=["", "Answer: 3"])
    recs, stats = build_pairs([prompt("a")], cs, irpo())
    assert recs == [] and stats["skipped_no_winner"] == 1
    recs, _ = build_pairs([prompt("a", "Answer: 2")], cs, irpo())
    assert [pair_key(r) for r in recs] == [("a", "Answer: 2", "Answer: 3")]


# --------------------------------------------------------------------------- K and the lcm stop


def test_one_by_one_gives_one_pair_even_with_large_k():
    recs, stats = build_pairs([prompt("a")], cands("a", correct=["Answer: 2"], incorrect=["Answer: 3"]),
                              irpo(pairs_per_prompt=10))
    assert len(recs) == 1 and stats["pairs"] == 1


def test_two_by_three_gives_all_six_distinct_pairs():
    w, l = ["W1", "W2"], ["L1", "L2", "L3"]
    recs, _ = build_pairs([prompt("a")], cands("a", correct=w, incorrect=l), irpo(pairs_per_prompt=10))
    assert len(recs) == 6
    assert {pair_key(r)[1:] for r in recs} == {(a, b) for a in w for b in l}
    assert_valid_pairs(recs)


@pytest.mark.parametrize("n_w, n_l, k", [(3, 4, 5), (3, 4, 12), (3, 4, 50), (2, 4, 10), (4, 6, 30), (1, 7, 5),
                                         (5, 1, 3), (6, 9, 100)])
def test_pairs_per_prompt_is_min_of_k_and_lcm(n_w, n_l, k):
    w = [f"winner {i}" for i in range(n_w)]
    l = [f"loser {i}" for i in range(n_l)]
    recs, _ = build_pairs([prompt("a")], cands("a", correct=w, incorrect=l), irpo(pairs_per_prompt=k))
    assert len(recs) == min(k, math.lcm(n_w, n_l))
    assert_valid_pairs(recs)
    # walking both lists together: once K covers a list, every element of it is used
    used_w = {text(r["chosen"]) for r in recs}
    used_l = {text(r["rejected"]) for r in recs}
    assert len(used_w) == min(n_w, len(recs)) and len(used_l) == min(n_l, len(recs))


def test_gold_counts_as_a_winner_in_the_walk():
    # 1 correct + gold = 2 winners x 3 losers -> 6 pairs with K=10, gold on the chosen side of 3 of them
    cs = cands("a", correct=["Answer: 2"], incorrect=["Answer: 3", "Answer: 4", "Answer: 5"])
    recs, stats = build_pairs([prompt("a", "gold\nAnswer: 2")], cs, irpo(pairs_per_prompt=10))
    assert len(recs) == 6
    assert sum(r["chosen_sample_idx"] == GOLD for r in recs) == 3
    assert stats["gold_used"] == 1
    assert_valid_pairs(recs)


# --------------------------------------------------------------------------- unparseable samples


def test_unparseable_as_loser_switch():
    cs = cands("a", correct=["Answer: 2"], incorrect=["Answer: 3"], unparseable=["no idea", "two?"])
    recs, _ = build_pairs([prompt("a")], cs, irpo(unparseable_as_loser=True))
    assert sorted(text(r["rejected"]) for r in recs) == ["Answer: 3", "no idea", "two?"]
    recs, _ = build_pairs([prompt("a")], cs, irpo(unparseable_as_loser=False))
    assert [text(r["rejected"]) for r in recs] == ["Answer: 3"]

    only_unparseable = cands("b", correct=["Answer: 2"], unparseable=["no idea"])
    recs, stats = build_pairs([prompt("b")], only_unparseable, irpo(unparseable_as_loser=False))
    assert recs == [] and stats["skipped_no_loser"] == 1
    recs, stats = build_pairs([prompt("b")], only_unparseable, irpo(unparseable_as_loser=True))
    assert len(recs) == 1 and recs[0]["rejected_reward"] == 0.0


# --------------------------------------------------------------------------- format


def test_trl_conversational_format_and_provenance():
    p = prompt("a", None)
    p["messages"] = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "1+1?"}]
    cs = cands("a", correct=["Answer: 2"], incorrect=["Answer: 3"])
    recs, _ = build_pairs([p], cs, irpo())
    (r,) = recs
    assert r["prompt"] == p["messages"]
    assert r["chosen"] == [{"role": "assistant", "content": "Answer: 2"}]
    assert r["rejected"] == [{"role": "assistant", "content": "Answer: 3"}]
    assert r["prompt_id"] == "a"
    assert (r["chosen_sample_idx"], r["rejected_sample_idx"]) == (0, 1)
    assert (r["chosen_reward"], r["rejected_reward"]) == (1.0, 0.0)
    assert isinstance(r["chosen_reward"], float)
    assert {"prompt", "chosen", "rejected"} <= set(r)
    assert "completion" not in r


def test_candidates_of_unknown_prompts_are_ignored():
    cs = cands("a", correct=["Answer: 2"], incorrect=["Answer: 3"]) + cands("zzz", correct=["x"], incorrect=["y"])
    recs, stats = build_pairs([prompt("a")], cs, irpo())
    assert {r["prompt_id"] for r in recs} == {"a"} and stats["prompts"] == 1


# --------------------------------------------------------------------------- max_pairs


def _many(n_prompts: int, n_w: int = 2, n_l: int = 3, gold: bool = False) -> tuple[list[dict], list[dict]]:
    ps, cs = [], []
    for i in range(n_prompts):
        pid = f"q{i:02d}"
        ps.append(prompt(pid, f"gold {pid}\nAnswer: 1" if gold else None))
        cs += cands(pid, correct=[f"{pid} right {j}" for j in range(n_w)],
                    incorrect=[f"{pid} wrong {j}" for j in range(n_l)])
    return ps, cs


@pytest.mark.parametrize("max_pairs", [1, 4, 6, 7, 13])
def test_max_pairs_spreads_over_questions(max_pairs):
    ps, cs = _many(4)  # 4 questions x 6 pairs = 24
    full, _ = build_pairs(ps, cs, irpo(pairs_per_prompt=10))
    assert len(full) == 24
    recs, stats = build_pairs(ps, cs, irpo(pairs_per_prompt=10, max_pairs=max_pairs))
    assert len(recs) == max_pairs == stats["pairs"]
    assert stats["capped"] == 24 - max_pairs
    per_q = [sum(r["prompt_id"] == p["prompt_id"] for r in recs) for p in ps]
    assert max(per_q) - min(per_q) <= 1  # round-robin: spread evenly
    if max_pairs >= len(ps):
        assert min(per_q) >= 1  # every question keeps at least one pair
    # the kept records are a subsequence of the uncapped ones, in the original order
    keys = [pair_key(r) for r in full]
    kept = [keys.index(pair_key(r)) for r in recs]
    assert kept == sorted(kept)
    assert_valid_pairs(recs)


def test_max_pairs_at_or_above_total_caps_nothing():
    ps, cs = _many(3)
    full, _ = build_pairs(ps, cs, irpo())
    for cap in (len(full), len(full) + 5):
        recs, stats = build_pairs(ps, cs, irpo(max_pairs=cap))
        assert recs == full and stats["capped"] == 0 and stats["pairs"] == len(full)


def test_max_pairs_with_uneven_questions():
    ps = [prompt("big"), prompt("small")]
    cs = cands("big", correct=["b1", "b2"], incorrect=["x1", "x2", "x3"]) + cands("small", correct=["s"],
                                                                                   incorrect=["y"])
    recs, stats = build_pairs(ps, cs, irpo(max_pairs=4))
    assert len(recs) == 4 and stats["capped"] == 3
    assert sum(r["prompt_id"] == "small" for r in recs) == 1


# --------------------------------------------------------------------------- determinism


def test_deterministic_given_seed_and_independent_of_candidate_order():
    ps, cs = _many(10, n_w=4, n_l=5, gold=True)
    a, sa = build_pairs(ps, cs, irpo(pairs_per_prompt=3, seed=7))
    shuffled = list(cs)
    random.Random(0).shuffle(shuffled)
    b, sb = build_pairs(ps, shuffled, irpo(pairs_per_prompt=3, seed=7))
    assert a == b and sa == sb
    c, _ = build_pairs(ps, cs, irpo(pairs_per_prompt=3, seed=8))
    assert a != c  # the seed picks which pairs (K < lcm) are built
    assert len(a) == len(c) == 30
    capped1, _ = build_pairs(ps, cs, irpo(pairs_per_prompt=3, seed=7, max_pairs=7))
    capped2, _ = build_pairs(ps, cs, irpo(pairs_per_prompt=3, seed=7, max_pairs=7))
    assert capped1 == capped2


def test_seed_picks_which_losers_and_which_questions_are_kept():
    # K < |losers|: the seed (not the sample order) picks which losers are used
    cs = cands("a", correct=["Answer: 2"], incorrect=[f"wrong {i}" for i in range(10)])
    picked = {frozenset(text(r["rejected"]) for r in build_pairs([prompt("a")], cs, irpo(pairs_per_prompt=3,
                                                                                           seed=s))[0])
              for s in range(8)}
    assert len(picked) > 1 and all(len(x) == 3 for x in picked)
    # max_pairs below the number of questions: the seed picks which questions keep their pair
    ps, cs = _many(10)
    kept = {frozenset(r["prompt_id"] for r in build_pairs(ps, cs, irpo(max_pairs=3, seed=s))[0]) for s in range(8)}
    assert len(kept) > 1 and all(len(x) == 3 for x in kept)


def test_every_pair_distinct_at_scale():
    ps, cs = _many(20, n_w=6, n_l=9, gold=True)  # 7 winners x 9 losers, lcm 63
    recs, stats = build_pairs(ps, cs, irpo(pairs_per_prompt=20))
    assert len(recs) == 20 * 20 and stats["gold_used"] <= 20
    assert_valid_pairs(recs)
    for r in recs:  # chosen from the winners, rejected from the losers of its own question
        pid = r["prompt_id"]
        assert text(r["chosen"]).startswith(f"{pid} right") or text(r["chosen"]).startswith(f"gold {pid}")
        assert text(r["rejected"]).startswith(f"{pid} wrong")


# --------------------------------------------------------------------------- rule: correct (STaR)


def star(**kw) -> PairsConfig:
    kw.setdefault("include_gold", False)
    return PairsConfig(rule="correct", **kw)


def test_star_config_file_leaves_out_gold_and_irpo_adds_it():
    correct = yaml.safe_load((CONF / "correct.yaml").read_text())
    assert correct["rule"] == "correct" and correct["include_gold"] is False
    irpo_conf = yaml.safe_load((CONF / "irpo.yaml").read_text())
    assert irpo_conf["rule"] == "irpo" and irpo_conf["include_gold"] is True
    cfg = PairsConfig(**{k: v for k, v in correct.items() if k != "seed"})
    assert cfg.include_gold is False and cfg.rule == "correct"


def test_star_only_distinct_correct_samples():
    cs = cands("a", correct=["Answer: 2", "Answer: 2 ", "2\nAnswer: 2"], incorrect=["Answer: 3"],
               unparseable=["dunno"])
    recs, stats = build_pairs([prompt("a", "gold\nAnswer: 2")], cs, star(pairs_per_prompt=10))
    assert sorted(text(r["completion"]) for r in recs) == ["2\nAnswer: 2", "Answer: 2"]
    for r in recs:
        assert set(r) >= {"prompt_id", "prompt", "completion", "sample_idx", "reward"}
        assert "chosen" not in r and "rejected" not in r
        assert r["prompt"] == prompt("a")["messages"] and r["reward"] == 1.0
        assert r["sample_idx"] in (0, 2) and r["sample_idx"] != GOLD
    assert stats["gold_used"] == 0 and stats["skipped_no_loser"] == 0


def test_star_include_gold_adds_gold_unless_duplicate():
    cs = cands("a", correct=["Answer: 2"], incorrect=["Answer: 3"])
    recs, stats = build_pairs([prompt("a", "gold\nAnswer: 2")], cs, star(include_gold=True))
    assert sorted(r["sample_idx"] for r in recs) == [GOLD, 0] and stats["gold_used"] == 1
    recs, _ = build_pairs([prompt("a", "Answer: 2")], cs, star(include_gold=True))
    assert [r["sample_idx"] for r in recs] == [0]


def test_star_per_prompt_cap_and_skips():
    ps = [prompt("a"), prompt("b", "gold\nAnswer: 1"), prompt("c")]
    cs = (cands("a", correct=[f"right {i}" for i in range(5)])
          + cands("b", incorrect=["wrong"], unparseable=["??"])
          + cands("c", incorrect=["wrong"]))
    recs, stats = build_pairs(ps, cs, star(pairs_per_prompt=2))
    assert len(recs) == 2 and {r["prompt_id"] for r in recs} == {"a"}
    assert len({text(r["completion"]) for r in recs}) == 2
    assert stats["skipped_no_winner"] == 2 and stats["skipped_no_loser"] == 0
    assert stats["prompts_with_pairs"] == 1 and stats["pairs"] == 2


def test_star_max_pairs_and_determinism():
    ps, cs = _many(5, n_w=3, n_l=1)
    a, sa = build_pairs(ps, cs, star(max_pairs=7, seed=3))
    b, _ = build_pairs(ps, cs, star(max_pairs=7, seed=3))
    assert a == b and len(a) == 7 and sa["capped"] == 15 - 7
    per_q = [sum(r["prompt_id"] == p["prompt_id"] for r in a) for p in ps]
    assert min(per_q) >= 1


# --------------------------------------------------------------------------- config validation


@pytest.mark.parametrize("kw", [{"pairs_per_prompt": 0}, {"pairs_per_prompt": -3}, {"max_pairs": 0},
                                {"max_pairs": -1}, {"rule": "dpo"}, {"rule": "IRPO"}, {"rule": ""}])
def test_pairs_config_refuses_bad_values(kw):
    with pytest.raises(ValueError):
        PairsConfig(**kw)


def test_pairs_config_accepts_good_values():
    PairsConfig(pairs_per_prompt=1, max_pairs=1)
    PairsConfig(rule="correct", max_pairs=None)
    assert PairsConfig().rule == "irpo" and PairsConfig().include_gold is True


# ----------------------------------------------------------------------------- rule: score (Self-Rewarding)

def _scored(pid, rewards, texts=None):
    texts = texts or [f"response {i} of {pid}" for i in range(len(rewards))]
    return [{"prompt_id": pid, "sample_idx": i, "completion": t, "reward": r,
             "status": "scored" if r is not None else "unscored"} for i, (r, t) in enumerate(zip(rewards, texts))]


def _prompt(pid):
    return {"prompt_id": pid, "messages": [{"role": "user", "content": f"q {pid}"}]}


def test_score_rule_best_vs_worst():
    recs, stats = build_pairs([_prompt("a")], _scored("a", [3.0, 4.5, None, 1.0]), PairsConfig(rule="score"))
    assert len(recs) == 1
    r = recs[0]
    assert (r["chosen_sample_idx"], r["rejected_sample_idx"]) == (1, 3)
    assert (r["chosen_reward"], r["rejected_reward"]) == (4.5, 1.0)
    assert r["chosen"][0]["content"] == "response 1 of a" and stats["prompts_with_pairs"] == 1


def test_score_rule_ties_gaps_and_unscored_give_no_pair():
    prompts = [_prompt(p) for p in "abcde"]
    cands = (_scored("a", [3.0, 3.0, 3.0]) + _scored("b", [3.0, 3.4]) + _scored("c", [None, 5.0, None])
             + _scored("d", [5.0, 1.0], texts=["same", "same"]) + _scored("e", [2.0, 4.0]))
    recs, stats = build_pairs(prompts, cands, PairsConfig(rule="score", min_gap=0.5))
    assert [r["prompt_id"] for r in recs] == ["e"]
    assert stats["skipped_tie"] == 1 and stats["skipped_small_gap"] == 1
    assert stats["skipped_too_few_scored"] == 2  # c: one scored; d: two scored but the same text
    assert all(r["chosen"] != r["rejected"] for r in recs)


def test_score_rule_breaks_equal_best_scores_by_seeded_draw():
    cands = _scored("a", [5.0, 5.0, 5.0, 5.0, 1.0])
    picks = {build_pairs([_prompt("a")], cands, PairsConfig(rule="score", seed=s))[0][0]["chosen_sample_idx"]
             for s in range(12)}
    assert len(picks) > 1 and 4 not in picks
    a = build_pairs([_prompt("a")], cands, PairsConfig(rule="score", seed=3))[0]
    assert a == build_pairs([_prompt("a")], cands, PairsConfig(rule="score", seed=3))[0]


def test_score_rule_refuses_negative_gap():
    with pytest.raises(ValueError, match="min_gap"):
        PairsConfig(rule="score", min_gap=-1)
