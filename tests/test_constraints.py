"""Rule-checked constraints: every checker on passing and failing text, the built-in task, and verify/IRPO use."""

import json

import pytest

from stages.tasks.constraints import TYPES, check_all, constraint_problems, describe, satisfied, words
from stages.tasks import TaskConfig, load_task
from stages.tasks import Problem
from stages.tasks.constraints import check
from stages.verify import CORRECT, INCORRECT

CASES = [  # (constraint, passing text, failing text)
    ({"type": "max_words", "n": 5}, "One two three four five.", "One two three four five six."),
    ({"type": "min_words", "n": 3}, "It's well-known, really.", "Too short."),
    ({"type": "include_word", "word": "simple"}, "A Simple idea.", "A plain idea, simply put."),
    ({"type": "exclude_word", "word": "run"}, "Jogging is fun.", "Running is fun."),
    ({"type": "bullets", "n": 2}, "Intro:\n- one\n* two", "- one\n- two\n- three"),
    ({"type": "paragraphs", "n": 2}, "First part.\n\nSecond part.", "One block.\nStill one."),
    ({"type": "lowercase"}, "all small, 42 times.", "Not all small."),
    ({"type": "uppercase"}, "ALL CAPS, 42 TIMES!", "ALL CAPS but one."),
    ({"type": "quotes"}, "\"Quoted answer.\"", "\"Half quoted."),
    ({"type": "title"}, "<<My Title>>\nBody text.", "My Title\n<<late title>>"),
    ({"type": "end_phrase", "phrase": "That is all."}, "Done. that is all.", "That is all. More text."),
    ({"type": "no_commas"}, "No commas here.", "Well, no."),
]


@pytest.mark.parametrize("c,good,bad", CASES, ids=[c[0]["type"] for c in CASES])
def test_each_checker(c, good, bad):
    assert satisfied(good, c) is True
    assert satisfied(bad, c) is False
    assert describe(c)  # every type has its sentence


def test_every_type_is_covered_and_empty_text_fails_everything():
    assert {c["type"] for c, _, _ in CASES} == set(TYPES)
    for c, _, _ in CASES:
        assert satisfied("", c) is False, c


def test_words_counts_contractions_and_hyphens_once():
    assert words("It's a well-known fact, 3 times.") == 6  # It's / a / well-known / fact / 3 / times


def test_builtin_task_is_deterministic_disjoint_and_self_consistent():
    cfg = TaskConfig(name="constraints", source="constraints", num_train=300, num_test=50, difficulties=[1, 2, 3])
    a, b = load_task(cfg), load_task(cfg)
    assert [p.question for p in a.test] == [p.question for p in b.test]
    assert not {p.question for p in a.train} & {p.question for p in a.test}
    for p in a.train + a.test:
        cs = json.loads(p.answer)
        assert len(cs) == p.difficulty and a.checker is check
        assert p.question.endswith(describe(cs[-1]))
        assert len({c["type"] for c in cs}) == len(cs)
        assert not ({"lowercase", "uppercase"} <= {c["type"] for c in cs})


def test_the_task_checker_scores_and_names_the_failed_constraints():
    p = Problem("c", "q", json.dumps([{"type": "max_words", "n": 4}, {"type": "lowercase"}]))
    ok, half = check(p, "short and small"), check(p, "Short and small")
    assert (ok.status, ok.score, ok.extracted, ok.extractor, ok.feedback) == (
        CORRECT, 1.0, "2/2", "constraints", "all constraints met")
    assert (half.status, half.score, half.extracted) == (INCORRECT, 0.5, "1/2")
    assert half.feedback == "1 of 2 constraints not met: Write your entire answer in lowercase letters, with no capital letters."


def test_problems_store_constraints_as_json():
    p = constraint_problems(1, seed=0, split="test", difficulties=[2])[0]
    assert check_all("", json.loads(p.answer)) == [False, False]
