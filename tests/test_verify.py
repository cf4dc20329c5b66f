"""Unit tests for stages/verify.py: answer extraction, equivalence and the three verdict statuses.

Fast and model-free: only the regex extractors and math-verify are exercised."""

from __future__ import annotations

import time

import pytest

from stages.verify import (
    CORRECT,
    EXTRACTORS,
    INCORRECT,
    MAX_SPAN,
    UNPARSEABLE,
    Verdict,
    VerifyConfig,
    answers_match,
    check_answer,
    extract_answer,
    verify,
)
from stages.tasks import Problem, TaskConfig


def check(text: str, gold: str, cfg: VerifyConfig) -> tuple:
    """(extracted, extractor, status) of the final-answer checker on one text."""
    v = check_answer(Problem("p", "q", gold), text, cfg)
    return v.extracted, v.extractor, v.status

DEFAULT = VerifyConfig()  # answer_line, boxed, answer_is
LENIENT = VerifyConfig(extractors=["answer_line", "boxed", "answer_is", "last_number"])


# --------------------------------------------------------------------------- extraction: formats


@pytest.mark.parametrize(
    "text, span, how",
    [
        ("Answer: 42", "42", "answer_line"),
        ("answer: 42", "42", "answer_line"),
        ("ANSWER: 42", "42", "answer_line"),
        ("Final answer: 42", "42", "answer_line"),
        ("Final Answer: 42", "42", "answer_line"),
        ("**Answer:** 42", "42", "answer_line"),
        ("**Answer: 42**", "42", "answer_line"),
        ("**Final Answer:** 42", "42", "answer_line"),
        ("Answer : 42", "42", "answer_line"),
        ("Answer： 42", "42", "answer_line"),  # full-width colon
        ("answer: $1,234", "1,234", "answer_line"),
        ("Answer: $5$", "5", "answer_line"),
        ("Answer: -17", "-17", "answer_line"),
        ("Answer: 3.75", "3.75", "answer_line"),
        ("Answer: 42.", "42", "answer_line"),
        ("Answer: 3.75.", "3.75", "answer_line"),
        ("Answer: 42!", "42", "answer_line"),
        ("Answer: 42;", "42", "answer_line"),
        ("Step 1: 2 + 3 = 5\nAnswer: 5\n", "5", "answer_line"),
        ("\\boxed{7}", "7", "boxed"),
        ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}", "boxed"),
        ("so $\\boxed{\\frac{\\sqrt{4}}{2}}$ is it", "\\frac{\\sqrt{4}}{2}", "boxed"),
        ("\\boxed{{{1}}}", "{{1}}", "boxed"),
        ("The answer is 7 apples.", "7 apples", "answer_is"),
        ("So the answer is: 12", "12", "answer_is"),
    ],
)
def test_extract_formats(text, span, how):
    assert extract_answer(text) == (span, how)


@pytest.mark.parametrize(
    "text, span",
    [
        ("Answer: 1\nsome more thinking\nAnswer: 2", "2"),
        ("Answer: 1\nAnswer: 2\nFinal answer: 3", "3"),
        ("Answer: 9\nwait, let me recheck\n**Answer:** -4", "-4"),
        ("Answer: 42\nAnswer:", "42"),  # a trailing empty answer line does not erase the last real one
        ("Answer: 42\nAnswer:   \n", "42"),
    ],
)
def test_last_answer_line_wins(text, span):
    assert extract_answer(text) == (span, "answer_line")


def test_last_boxed_and_last_answer_is_win():
    assert extract_answer("\\boxed{1} no wait \\boxed{2}") == ("2", "boxed")
    assert extract_answer("the answer is 3.\nHmm, the answer is 4.") == ("4", "answer_is")
    # the last one wins even on the same line (a greedy rest-of-line group used to swallow it and return "3. ...")
    assert extract_answer("I thought the answer is 3. Hmm, no: the answer is 4.") == ("4", "answer_is")
    assert check("I thought the answer is 3. Hmm, no: the answer is 4.", "4", DEFAULT)[2] == CORRECT
    assert extract_answer("Answer: 3 ... Final answer: 4") == ("4", "answer_line")
    assert extract_answer("Answer: Answer: 11") == ("11", "answer_line")


# --------------------------------------------------------------------------- extraction: adversarial


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "\n\t \n",
        "Answer:",
        "Answer:    ",
        "**Answer:**",
        "Answer: .",
        "\\boxed{12",  # unbalanced
        "\\boxed{}",
        "no number here at all",
        "I computed 5 + 6 = 11 apples",  # a number, but no asked-for answer format
        "答案是四十二",
    ],
)
def test_nothing_extracted_by_default(text):
    assert extract_answer(text) == (None, None)
    assert check(text, "11", DEFAULT) == (None, None, UNPARSEABLE)


def test_huge_digit_string_is_fast_and_bounded():
    text = "1" * 100_000
    t0 = time.perf_counter()
    assert extract_answer(text) == (None, None)
    span, how = extract_answer(text, EXTRACTORS)
    assert how == "last_number" and span == "1" * MAX_SPAN
    assert check(text, "42", LENIENT)[2] == INCORRECT
    span, how, status = check("Answer: " + "9" * 100_000, "42", DEFAULT)
    assert how == "answer_line" and len(span) == MAX_SPAN and status == INCORRECT
    assert time.perf_counter() - t0 < 5


@pytest.mark.parametrize(
    "text",
    [
        "answer" + " " * 100_000 + "x",  # used to backtrack quadratically (minutes) before the regex fix
        "Final answer" + "\n" * 100_000,
        "the answer is" + " " * 100_000,
        "\\boxed{" * 20_000,
        "1," * 50_000,
        "Answer: " * 20_000,
        "the answer is " * 20_000,
        "Answer: answer" + " " * 100_000 + "x",
        "\\boxed{answer" + " " * 100_000 + "}",
    ],
)
def test_adversarial_inputs_run_in_linear_time(text):
    t0 = time.perf_counter()
    for extractors in (("answer_line", "boxed", "answer_is"), EXTRACTORS):
        extract_answer(text, extractors)
    assert time.perf_counter() - t0 < 2.0


def test_unicode_text():
    assert check("Réponse — on a 40 + 2 ✓\nAnswer： 42 🎉", "42", DEFAULT)[2] == CORRECT
    assert check("Ответ…\nAnswer: 42", "42", DEFAULT) == ("42", "answer_line", CORRECT)
    assert check("Answer: 四十二", "42", DEFAULT)[2] == UNPARSEABLE
    assert check("ça fait 🍎🍎🍎", "3", DEFAULT) == (None, None, UNPARSEABLE)


# --------------------------------------------------------------------------- extractor order and config


def test_extractor_order_is_configured_order():
    text = "\\boxed{3}\nAnswer: 5"
    assert extract_answer(text) == ("5", "answer_line")
    assert extract_answer(text, ["boxed", "answer_line"]) == ("3", "boxed")
    text = "The answer is 9.\n\\boxed{4}"
    assert extract_answer(text) == ("4", "boxed")  # boxed comes before answer_is by default
    assert extract_answer(text, ["answer_is", "boxed"]) == ("9", "answer_is")
    # an extractor that finds nothing hands over to the next
    assert extract_answer("The answer is 9.", ["boxed", "answer_is"]) == ("9", "answer_is")


def test_last_number_only_when_configured():
    text = "First 3 apples, then 4 more, so we end with 7"
    assert extract_answer(text) == (None, None)
    assert check(text, "7", DEFAULT) == (None, None, UNPARSEABLE)
    assert extract_answer(text, ["last_number"]) == ("7", "last_number")
    assert check(text, "7", LENIENT) == ("7", "last_number", CORRECT)
    assert check(text, "8", LENIENT) == ("7", "last_number", INCORRECT)
    # the strict extractors still take precedence over last_number
    assert check("Answer: 5\nchecking with 7 and 9", "5", LENIENT) == ("5", "answer_line", CORRECT)
    assert check("\\boxed{5} and later 9", "5", LENIENT) == ("5", "boxed", CORRECT)
    assert extract_answer("\\boxed{12", EXTRACTORS) == ("12", "last_number")
    assert extract_answer("it drops to -5 degrees", ["last_number"]) == ("-5", "last_number")
    assert extract_answer("costs 1,234.50 dollars", ["last_number"]) == ("1,234.50", "last_number")


def test_default_config_is_strict():
    assert VerifyConfig().extractors == ["answer_line", "boxed", "answer_is"]
    assert "last_number" not in VerifyConfig().extractors


@pytest.mark.parametrize("bad", [["answer_line", "regex"], ["last"], ["Boxed"], []])
def test_verify_config_refuses_unknown_or_empty_extractors(bad):
    with pytest.raises(ValueError):
        VerifyConfig(extractors=bad)


def test_verify_config_accepts_every_known_extractor():
    assert VerifyConfig(extractors=list(EXTRACTORS)).extractors == list(EXTRACTORS)
    for e in EXTRACTORS:
        VerifyConfig(extractors=[e])


# --------------------------------------------------------------------------- equivalence


@pytest.mark.parametrize(
    "gold, pred",
    [
        ("0.5", "1/2"),
        ("0.5", "\\frac{1}{2}"),
        ("1/2", "0.5"),
        ("\\frac{1}{2}", "0.5"),
        ("1234", "1,234"),
        ("1,234", "1234"),
        ("42", "42.0"),
        ("42.0", "42"),
        ("42", "42"),
        ("-3", "-3"),
        ("-3", "-3.0"),
        ("1", "\\frac{\\sqrt{4}}{2}"),  # bare LaTeX beyond \frac{a}{b}: math-verify needs it wrapped in $...$
        ("0.5", "\\dfrac{1}{2}"),
        ("2", "\\sqrt{4}"),
        ("\\sqrt{2}", "\\sqrt{2}"),
        ("\\dfrac{3}{4}", "0.75"),
        ("7", "7 apples"),
    ],
)
def test_answers_match_equivalent(gold, pred):
    assert answers_match(gold, pred) is True


@pytest.mark.parametrize(
    "gold, pred",
    [
        ("42", "43"),
        ("42", "4.2"),
        ("0.5", "1/3"),
        ("1/2", "0.25"),
        ("1234", "123.4"),
        ("1234", "12,345"),
        ("-3", "3"),
        ("3", "-3"),
        ("0.5", "\\frac{1}{3}"),
        ("\\sqrt{2}", "1.414"),
        ("\\sqrt{2}", "\\sqrt{3}"),
    ],
)
def test_answers_match_not_equivalent(gold, pred):
    assert answers_match(gold, pred) is False


@pytest.mark.parametrize("pred", ["eleven", "{", "??", "x+"])
def test_answers_match_unparseable_pred_is_none(pred):
    assert answers_match("42", pred) is None


def test_answers_match_text_gold():
    # a gold answer that is not math (multiple-choice letter, yes/no) is compared as normalised text;
    # before the fix these were always None (unparseable), so such a task could never get a reward
    assert answers_match("A", "A") is True
    assert answers_match("A", " a ") is True
    assert answers_match("A", "B") is False
    assert answers_match("yes", "Yes") is True
    assert check("Reasoning...\nAnswer: B", "B", DEFAULT) == ("B", "answer_line", CORRECT)
    assert check("Reasoning...\nAnswer: C", "B", DEFAULT) == ("C", "answer_line", INCORRECT)


# --------------------------------------------------------------------------- check: statuses


@pytest.mark.parametrize(
    "text, gold, status",
    [
        ("Answer: 42", "42", CORRECT),
        ("Final answer: 42", "42", CORRECT),
        ("**Answer:** 42", "42", CORRECT),
        ("Answer: 42.", "42", CORRECT),
        ("answer: $1,234", "1234", CORRECT),
        ("The total is \\boxed{\\frac{1}{2}}", "0.5", CORRECT),
        ("The total is \\boxed{\\dfrac{1}{2}}.", "0.5", CORRECT),
        ("$\\boxed{\\frac{\\sqrt{4}}{2}}$", "1", CORRECT),
        ("Answer: $\\sqrt{2}$", "\\sqrt{2}", CORRECT),
        ("The answer is 7 apples.", "7", CORRECT),
        ("Answer: -17", "-17", CORRECT),
        ("Answer: -17", "17", INCORRECT),
        ("Answer: 3.75", "3.75", CORRECT),
        ("Answer: 3.75", "3.7", INCORRECT),
        ("Answer: 41", "42", INCORRECT),
        ("The answer is 8 apples.", "7", INCORRECT),
        ("Answer: 1\nAnswer: 2", "1", INCORRECT),  # the last one counts
        ("Answer: 1\nAnswer: 2", "2", CORRECT),
        ("Answer: eleven", "11", UNPARSEABLE),
        ("Answer:", "11", UNPARSEABLE),
        ("", "11", UNPARSEABLE),
        ("\\boxed{11", "11", UNPARSEABLE),
    ],
)
def test_check_status(text, gold, status):
    assert check(text, gold, DEFAULT)[2] == status


def test_check_returns_span_and_extractor():
    assert check("Answer: eleven", "11", DEFAULT) == ("eleven", "answer_line", UNPARSEABLE)
    assert check("\\boxed{\\frac{1}{2}}", "0.5", DEFAULT) == ("\\frac{1}{2}", "boxed", CORRECT)


def _task(tmp_path, gold: dict) -> TaskConfig:
    import json

    path = tmp_path / "gold.jsonl"
    path.write_text("".join(json.dumps({"id": k, "question": f"q {k}", "answer": v}) + "\n" for k, v in gold.items()))
    return TaskConfig(name="gold", source=str(path), id_field="id", test_size=1)


def test_verify_records(tmp_path):
    completions = [
        {"prompt_id": "p1", "sample_idx": 0, "completion": "2 + 2 = 4\nAnswer: 4"},
        {"prompt_id": "p1", "sample_idx": "1", "completion": "Answer: 5"},
        {"prompt_id": "p2", "sample_idx": 0, "completion": "I don't know"},
        {"prompt_id": "p2", "sample_idx": 3, "completion": "\\boxed{\\frac{1}{2}}"},
        {"prompt_id": "p2", "sample_idx": 4, "completion": "Answer: half"},
    ]
    cfg = VerifyConfig(task=_task(tmp_path, {"p1": "4", "p2": "0.5"}))
    out, stats = verify(None, [], completions, cfg)
    assert [(v["prompt_id"], v["sample_idx"]) for v in out] == [("p1", 0), ("p1", 1), ("p2", 0), ("p2", 3), ("p2", 4)]
    assert isinstance(out[1]["sample_idx"], int) and all(v["completion"] for v in out)  # the sample's fields kept
    assert [v["status"] for v in out] == [CORRECT, INCORRECT, UNPARSEABLE, CORRECT, UNPARSEABLE]
    assert [v["reward"] for v in out] == [1.0, 0.0, 0.0, 1.0, 0.0] == [v["score"] for v in out]
    assert [v["extracted"] for v in out] == ["4", "5", None, "\\frac{1}{2}", "half"]
    assert [v["extractor"] for v in out] == ["answer_line", "answer_line", None, "boxed", "answer_line"]
    assert stats == {CORRECT: 2, INCORRECT: 1, UNPARSEABLE: 2}
    assert out[1]["feedback"] == "wrong final answer: got 5, expected 4"
    assert out[2]["feedback"].startswith("no final answer found") and "could not be read" in out[4]["feedback"]


def test_verdict_reward_follows_status():
    assert Verdict(CORRECT, 1.0, "ok").reward == 1.0
    assert Verdict(INCORRECT, 0.5, "half").reward == 0.0 and Verdict(UNPARSEABLE, 0.0, "none").reward == 0.0


def test_verify_uses_configured_extractors(tmp_path):
    completions = [{"prompt_id": "p", "sample_idx": 0, "completion": "so it is 12"}]
    task = _task(tmp_path, {"p": "12", "other": "1"})
    assert verify(None, [], completions, VerifyConfig(task=task))[0][0]["status"] == UNPARSEABLE
    v = verify(None, [], completions, VerifyConfig(LENIENT.extractors, task=task))[0][0]
    assert (v["status"], v["reward"], v["extractor"]) == (CORRECT, 1.0, "last_number")


def test_verify_unknown_prompt_raises(tmp_path):
    with pytest.raises(KeyError):
        verify(None, [], [{"prompt_id": "nope", "sample_idx": 0, "completion": "Answer: 1"}],
               VerifyConfig(task=_task(tmp_path, {"p": "1", "q": "2"})))
    with pytest.raises(ValueError, match="task is not set"):
        verify(None, [], [], VerifyConfig())
