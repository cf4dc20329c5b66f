"""The behavior analysis (stages/behaviors.py): its detectors measured on hand-labelled chains, the structural rules
on the cases they must not confuse, the per-iteration statistics, the optional classifier, and the stage in a run."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import pytest

from stages.behaviors import BEHAVIORS, analyse, count_behaviors, parse_count

FIXTURE = Path(__file__).parent / "fixtures" / "behaviors.jsonl"
# Floors on the fixture (44 chains written for the project, 28 Countdown and 16 arithmetic word problems; labels are
# presence per chain, by METHODS.md's definitions). Measured 2026-12-02: verification P 1.00 R 0.94, backtracking
# P 1.00 R 0.79, subgoal P 1.00 R 0.90, backward P 1.00 R 0.88. The floors leave room for one more miss or false
# alarm per behavior (8-18 positives each, so one chain moves recall by 6-13 points) and fail on a detector that
# fires on the clear negatives or stops seeing a whole form of a behavior.
FLOORS = {"verification": (0.9, 0.85), "backtracking": (0.85, 0.7), "subgoal": (0.85, 0.75), "backward": (0.85, 0.75)}


def _fixture() -> list[dict]:
    return [json.loads(line) for line in FIXTURE.read_text().splitlines() if line.strip()]


def test_fixture_is_large_mixed_and_has_negatives():
    rows = _fixture()
    assert len(rows) >= 40 and len({r["id"] for r in rows}) == len(rows)
    assert sum("numbers" in r for r in rows) >= 20 and sum("numbers" not in r for r in rows) >= 12
    assert sum(not any(r["labels"].values()) for r in rows) >= 12  # chains with none of the behaviors
    for b in BEHAVIORS:
        assert sum(r["labels"][b] for r in rows) >= 6, b


def test_detectors_precision_and_recall_on_the_hand_labelled_chains(capsys):
    rows = _fixture()
    lines = ["behavior       precision  recall  (true pos, false pos, false neg) on %d chains" % len(rows)]
    for b in BEHAVIORS:
        tp = fp = fn = 0
        for r in rows:
            found = count_behaviors(r["text"], r.get("numbers"), r.get("target"))[b] > 0
            tp, fp, fn = tp + (found and r["labels"][b]), fp + (found and not r["labels"][b]), fn + (r["labels"][b] and not found)
        precision, recall = tp / max(tp + fp, 1), tp / max(tp + fn, 1)
        lines.append(f"{b:13s}  {precision:9.2f}  {recall:6.2f}  ({tp}, {fp}, {fn})")
        assert precision >= FLOORS[b][0] and recall >= FLOORS[b][1], lines
    with capsys.disabled():
        print("\n" + "\n".join(lines))


@pytest.mark.parametrize("text, numbers, target, expected", [
    # two sub-results joined later: the second starts from the given numbers but abandons nothing
    ("3 + 5 = 8. 2 + 1 = 3. 8 * 3 = 24.", [3, 5, 2, 1], 24, {}),
    # the target used after it was produced is forward work, not backward chaining
    ("4 * 6 = 24. 24 * 1 = 24.", [4, 6, 1], 24, {}),
    # restating the problem is not verification; naming the target itself is not a subgoal
    ("The target is 24 and we need to reach 24 with 4, 6, 1.", [4, 6, 1], 24, {}),
    # what an unprimed 135M model writes on Countdown: a list of one-step products is not backtracking, the target
    # multiplied by itself is not backward chaining (seen in a real run before these rules were tightened)
    ("1. 20 * 18 = 360 2. 5 * 18 = 90 3. 20 * 5 = 100 Answer: 90", [5, 20, 18], 55, {}),
    ("1. 12 = 12 * 2 2. 9 = 9 * 2 3. 12 * 12 = 144", [2, 9, 4], 12, {}),
    ("24 / 4 = 6, so I need 6 from 6 and 1: 6 * 1 = 6. Then 4 * 6 = 24.", [4, 6, 1], 24, {"backward": 1, "subgoal": 1}),
    ("24 = 4 * 6, and 6 * 1 = 6.", [4, 6, 1], 24, {"backward": 1}),
    ("4 + 6 = 10, 10 + 1 = 11. 4 * 6 = 24, 24 * 1 = 24.", [4, 6, 1], 24, {"backtracking": 1}),
    ("4 + 6 = 10, 10 * 1 = 10, which is 14 short of 24.", [4, 6, 1], 24, {"verification": 1}),
    ("4 * 6 * 1 = 24, exactly the target.", [4, 6, 1], 24, {"verification": 1}),
    # general chains: lexical cues only, at most once per run of sentences
    ("Let me check: 19 - 7 = 12. Wait, let me try again. Another approach works.", None, None,
     {"verification": 1, "backtracking": 1}),
])
def test_structural_rules(text, numbers, target, expected):
    assert count_behaviors(text, numbers, target) == {b: expected.get(b, 0) for b in BEHAVIORS}


def _judged(pid, k, text, status, **extra):
    return {"prompt_id": pid, "sample_idx": k, "completion": text, "status": status, **extra}


def test_statistics_split_by_the_verdict_and_hinted_samples_count_their_own_text():
    judged = [_judged("a", 0, "4 + 6 = 10, 10 + 1 = 11, which is not 24. Let me try again: 4 * 6 * 1 = 24.", "correct"),
              _judged("a", 1, "4 * 6 * 1 = 24", "correct"),
              _judged("a", 2, "1 + 4 + 6 = 11", "incorrect"),
              _judged("a", 3, "Let me verify the hint. 4 * 6 = 24", "incorrect", hint="Let me verify the hint.",
                      continuation=" 4 * 6 = 24")]
    records, stats = analyse(judged, lambda pid: ([4, 6, 1], Fraction(24)))
    assert [r["verification"] for r in records] == [1, 0, 0, 0]  # the last one's cue was in SEELE's hint
    assert all(r["structural"] for r in records)
    assert stats["verification_share"] == 0.25 and stats["verification_share_correct"] == 0.5
    assert stats["verification_share_incorrect"] == 0.0 and stats["backtracking_mean"] == 0.25
    assert stats["any_share_correct"] == 0.5 and stats["analysed"] == 4
    no_verdict = [{k: v for k, v in r.items() if k != "status"} for r in judged]  # an LLM judge: no checker
    records, stats = analyse(no_verdict, lambda pid: None)
    assert records[0]["correct"] is None and "verification_share_correct" not in stats


def test_classifier_counts_are_parsed_and_compared_with_the_rules():
    assert parse_count("... <count>3</count>") == 3 and parse_count("three") == 0 and parse_count(None) == 0
    judged = [_judged("a", 0, "12 is not 24. Let me try again.", "incorrect"), _judged("a", 1, "4 * 6 = 24", "correct")]
    asked = []

    def classify(asks):  # a stand-in model: says 2 when the chain has "try", else writes no count
        asked.extend(asks)
        return ["<count>2</count>" if "try" in a["messages"][0]["content"].split("Count how")[0] else "no idea"
                for a in asks]

    records, stats = analyse(judged, lambda pid: ([4, 6, 1], Fraction(24)), classify)
    assert len(asked) == 8 and all("<count>" in a["messages"][0]["content"] for a in asked)
    assert records[0]["llm_backtracking"] == 2 and records[1]["llm_backtracking"] == 0
    assert stats["llm_backtracking_agreement"] == 1.0 and stats["llm_subgoal_agreement"] == 0.5


def test_long_chains_without_an_equals_sign_are_read_in_linear_time():
    """A model's runaway "3 * 3 * 3 * ..." once made the equation pattern backtrack exponentially (optional spaces on
    both sides of every operand): 14 operands took over 20 s, each one more doubled it. The alarm fails the test
    instead of hanging the suite."""
    import signal

    signal.signal(signal.SIGALRM, lambda *a: (_ for _ in ()).throw(TimeoutError("catastrophic backtracking")))
    signal.alarm(20)
    try:
        assert count_behaviors(" * ".join(["3"] * 400) + " and so on", [3, 3, 3], 27)["backward"] == 0
        assert count_behaviors("( 1 + 2 ) * " * 200 + "x", [1, 2], 9) == {b: 0 for b in BEHAVIORS}
    finally:
        signal.alarm(0)
