"""reasoning-gym tasks (stages/tasks/gym.py): generators and options passed through, disjoint splits, gold answers
and solutions, and the Countdown checker — an AST walk that never evaluates model text."""

from __future__ import annotations

import pytest

from stages.pairs import PairsConfig, no_gold_notice
from stages.tasks import Problem, TaskConfig, TaskInputError, load_task
from stages.tasks.gym import countdown_spec, check_countdown
from stages.verify import VerifyConfig

SMALL = {"min_numbers": 3, "max_numbers": 4, "max_value": 20, "min_target": 10, "max_target": 100}


def _gym(dataset, **kw):
    return load_task(TaskConfig(name=f"gym-{dataset}", source="gym", dataset=dataset, num_train=kw.pop("num_train", 60),
                                num_test=kw.pop("num_test", 20), **kw))


@pytest.mark.parametrize("dataset, options, has_solution", [
    ("countdown", SMALL, False), ("gsm_symbolic", {}, True), ("basic_arithmetic", {}, False), ("chain_sum", {}, False),
])
def test_generators_give_disjoint_splits_and_their_gold_answers_pass(dataset, options, has_solution):
    task = _gym(dataset, options=options)
    assert len(task.test) == 20 and len(task.train) == 60
    assert not {p.question for p in task.train} & {p.question for p in task.test}
    assert all(task.check(p, f"Let me think.\nAnswer: {p.answer}").status == "correct" for p in task.test)
    assert all(task.check(p, "Answer: 1 +").status != "correct" for p in task.test[:5])
    assert all(bool(p.solution) == has_solution for p in task.train)
    if has_solution:  # gsm_symbolic's answer_cot: read like GSM8K, ending in the prompt's answer line
        assert all(task.check(p, p.solution).status == "correct" and "####" not in p.solution for p in task.train)
    notice = no_gold_notice(task, PairsConfig())
    assert bool(notice) != has_solution and (not notice or "gold-in-winners" in notice[0])


def test_options_are_passed_through_and_change_the_problems():
    small = _gym("countdown", options=SMALL)
    assert {len(countdown_spec(p)[0]) for p in small.test} <= {3, 4}
    assert all(max(countdown_spec(p)[0]) <= 20 for p in small.test)
    assert {p.question for p in _gym("countdown", options={**SMALL, "max_numbers": 3}).test} != \
        {p.question for p in small.test}
    level0 = _gym("countdown", options={"curriculum_level": 0})
    assert level0.test and level0.test[0].question != small.test[0].question
    hard = _gym("gsm_symbolic", options={"difficulty": 1.0})
    assert hard.test


@pytest.mark.parametrize("cfg, message", [
    ({"dataset": "countdwn"}, "reasoning-gym has no generator 'countdwn'"),
    ({"dataset": "countdown", "options": {"min_numbrs": 3}}, "task.options: countdown refuses"),
    ({"dataset": "gsm_symbolic", "options": {"curriculum_level": 1}}, "has no curriculum"),
    # was "got multiple values for keyword argument 'size'"
    ({"dataset": "countdown", "options": {"size": 3}}, "task.options.size is set by the pipeline: use "
                                                       "task.num_train and task.num_test"),
])
def test_bad_generator_or_options_are_one_line(cfg, message):
    with pytest.raises(TaskInputError, match=message):
        load_task(TaskConfig(name="g", source="gym", num_train=5, num_test=5, **cfg))


def test_gym_needs_a_dataset_name():
    with pytest.raises(ValueError, match="task.dataset"):
        TaskConfig(source="gym")


COUNTDOWN = Problem(id="c1", question="Calculate 24 using all of these numbers: 4, 6, 1, 1.", answer="4 * 6 * 1 * 1")


@pytest.mark.parametrize("answer, status, feedback", [
    ("4 * 6 * 1 * 1", "correct", "correct: 4 * 6 * 1 * 1 = 24"),
    ("(4 * 6) / (1 * 1)", "correct", "correct"),
    ("6 * 4 * 1 / 1 = 24", "correct", "correct"),  # the "= target" tail is ignored
    ("(6 - 1 - 1) * 4 + 8", "incorrect", "uses 8 which is not among the numbers"),
    ("4 * 6", "incorrect", "does not use 1, 1"),
    ("4 * 6 * 1 * 1 * 1", "incorrect", "uses 1 which is not among the numbers (or more often than given)"),
    ("4 + 6 + 1 + 1", "incorrect", "4 + 6 + 1 + 1 = 12, not the target 24"),
    ("4 ** 6 * 1 * 1", "unparseable", "found **"),
    ("-4 * -6 * 1 * 1", "correct", "correct"),
    ("+4 * 6 * 1 * 1", "unparseable", "a plus sign"),
    ("4.0 * 6 * 1 * 1", "unparseable", "a non-integer"),
    ("__import__('os').system('touch /tmp/pwned') or 24", "unparseable", "only the given numbers, + - * /"),
    ("(lambda: 24)()", "unparseable", "a function call"),
    ("4 * 6 / (1 - 1)", "incorrect", "divides by zero"),
    ("((((((((((((((((((((((((((((((4" + ")" * 30 + " * 6 * 1 * 1", "correct", "correct"),
])
def test_countdown_checker(answer, status, feedback):
    v = check_countdown(COUNTDOWN, f"Some reasoning.\nAnswer: {answer}", VerifyConfig())
    assert v.status == status and feedback in v.feedback, v


def test_countdown_non_integer_intermediates_and_extra_text():
    classic = Problem(id="c3", question="", answer="8 / (3 - 8 / 3)")  # 3, 3, 8, 8 -> 24 only through 8/3
    assert check_countdown(classic, "Answer: 8 / (3 - 8 / 3)", VerifyConfig()).status == "correct"
    assert check_countdown(classic, "Answer: (8 / 3 - 3) * 8", VerifyConfig()).status == "incorrect"
    # the answer line holds the expression only (METHODS.md): words after it make it unreadable, not right
    v = check_countdown(COUNTDOWN, "Answer: 4 * 6 * 1 * 1. This works because 4 times 6 is 24.", VerifyConfig())
    assert v.status == "unparseable" and "not an arithmetic expression" in v.feedback
    assert check_countdown(COUNTDOWN, "So the answer is 4 * 6 * 1 * 1", VerifyConfig()).status == "correct"


def test_countdown_tolerance_and_no_answer():
    frac = Problem(id="c2", question="", answer="(7 + 1) / 3")  # target 8/3
    assert check_countdown(frac, "Answer: (1 + 7) / 3", VerifyConfig()).status == "correct"
    assert check_countdown(frac, "Answer: 7 + 1 - 3", VerifyConfig()).status == "incorrect"
    assert check_countdown(COUNTDOWN, "I give up.", VerifyConfig()).status == "unparseable"


def test_without_the_gym_extra_task_gym_says_how_to_install_it(monkeypatch):
    from stages.tasks import _load

    _load.cache_clear()  # an earlier test may have loaded the same task
    monkeypatch.setitem(__import__("sys").modules, "reasoning_gym.factory", None)  # as if not installed
    with pytest.raises(TaskInputError, match=r"task=gym needs reasoning-gym .*pip install -e '\.\[gym\]'"):
        _gym("countdown", options=SMALL)
