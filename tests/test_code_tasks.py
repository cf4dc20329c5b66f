"""Code tasks (stages/tasks/code.py): the built-in problems, HumanEval from its package, HumanEval- and MBPP-layout
files; code extraction; every verdict comes from really running the program in the sandbox."""

from __future__ import annotations

import json

import pytest

from stages.sandbox import _mode
from stages.tasks import TaskConfig, TaskInputError, _load, load_task
from stages.tasks.code import extract_code
from stages.verify import VerifyConfig, verify

ALLOW = {"weaker_isolation": _mode() != "bwrap"}  # these tests check tasks; tests/test_sandbox.py checks isolation


def _task(**kw):
    kw = {"name": "code", "sandbox": ALLOW, "question_field": None, "solution_field": None, **kw}
    return load_task(TaskConfig(**kw))


def _gold_code(problem) -> str:
    return problem.solution.split("```python\n", 1)[1].rsplit("```", 1)[0]


def test_builtin_problems_pass_their_own_tests_and_splits_are_disjoint():
    task = _task(source="code")
    assert len(task.train) == 24 and len(task.test) == 12 and task.kind == "program"
    assert not {p.id for p in task.train} & {p.id for p in task.test}
    assert {p.difficulty for p in task.test} == {1, 2, 3}
    verdicts = task.check_all([(p, f"Here you go:\n{p.solution}\nDone.") for p in task.train + task.test])
    assert all(v.status == "correct" and v.feedback == "passed all tests" for v in verdicts)
    easy = _task(source="code", difficulties=[1])
    assert {p.difficulty for p in easy.train + easy.test} == {1} and len(easy.train) == 8


def test_wrong_missing_and_broken_code_get_feedback():
    task = _task(source="code")
    p = next(p for p in task.train if p.id == "code-add")
    assert task.check(p, "```python\ndef add(a, b):\n    return a - b\n```").feedback == "failed: assert add(2, 3) == 5"
    v = task.check(p, "I think the answer is 5.")
    assert v.status == "unparseable" and "```python" in v.feedback
    v = task.check(p, "```python\ndef plus(a, b):\n    return a + b\n```")
    assert v.status == "incorrect" and v.feedback.startswith("NameError: name 'add' is not defined")
    v = task.check(p, "```python\ndef add(a, b):\n    while True:\n        pass\n```")
    assert v.status == "incorrect" and v.feedback == "timed out after 5 s"


@pytest.mark.parametrize("text, want", [
    ("```python\ndef f():\n    return 1\n```", "def f():\n    return 1\n"),
    ("text\n```py\nx = 1\n```\nthen\n```python\ndef g():\n    pass\n```\nend", "def g():\n    pass\n"),
    ("```python\ndef g():\n    pass\n```\n```python\nprint(g())\n```", "def g():\n    pass\n"),  # the one defining g
    ("```python\ndef g():\n    return 2", "def g():\n    return 2\n"),  # cut off before the closing fence
    ("Sure! def g(): is wrong\ndef g():\n    return 3", "def g():\n    return 3\n"),  # bare code
    ("no code at all", None),
])
def test_extract_code(text, want):
    assert extract_code(text, "g") == want


def test_humaneval_reads_the_package_offline_and_accepts_full_functions_and_bodies():
    task = _task(name="humaneval", source="humaneval", test_size=64)
    assert len(task.train) == 100 and len(task.test) == 64
    assert not {p.id for p in task.train} & {p.id for p in task.test}
    sample = task.test[:8]
    assert all(v.status == "correct" for v in task.check_all([(p, p.solution) for p in sample]))
    p = sample[0]
    stub = json.loads(p.answer)["stub"]
    body = _gold_code(p)[len(stub):]
    assert task.check(p, body).status == "correct"  # HumanEval's completion format: the body alone
    full_without_imports = _gold_code(p).split("def ", 1)[1]
    assert task.check(p, "```python\ndef " + full_without_imports + "```").status == "correct"  # imports added
    assert task.check(p, "```python\ndef " + json.loads(p.answer)["entry_point"] + "(*a):\n    return None\n```"
                      ).feedback.startswith("failed: assert candidate(")


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_mbpp_layout_file(tmp_path):
    rows = [{"task_id": i, "text": f"Write a function that adds {i}.", "code": f"def add_{i}(x):\n    return x + {i}",
             "test_list": [f"assert add_{i}(1) == {i + 1}", f"assert add_{i}(0) == {i}"], "test_setup_code": ""}
            for i in range(6)] + [{"task_id": 99, "text": "", "code": "", "test_list": []}]
    task = _task(source=str(_write_jsonl(tmp_path / "mbpp.jsonl", rows)), layout="mbpp", test_size=2)
    assert len(task.train) == 4 and len(task.test) == 2 and task.skipped == {"empty_question_or_tests": 1}
    p = task.test[0]
    assert "must be named `add_" in p.question
    assert all(v.status == "correct" for v in task.check_all([(q, q.solution) for q in task.train + task.test]))


def test_humaneval_layout_file_with_own_field_names(tmp_path):
    rows = [{"id": f"t{i}", "stub": f"def triple_{i}(x):\n    \"\"\"x times 3\"\"\"\n", "fn": f"triple_{i}",
             "checks": "def check(candidate):\n    assert candidate(2) == 6\n", "ref": "    return 3 * x\n"}
            for i in range(4)]
    path = _write_jsonl(tmp_path / "mine.jsonl", rows)
    with pytest.raises(TaskInputError, match="no row has the field 'prompt'"):
        _task(source=str(path), layout="humaneval")
    task = _task(source=str(path), layout="humaneval", question_field="stub", tests_field="checks", entry_field="fn",
                 solution_field="ref", test_size=2)
    assert all(v.status == "correct" for v in task.check_all([(q, q.solution) for q in task.train + task.test]))


def test_verify_the_judge_interface_runs_programs(tmp_path):
    """The judge step on a code task: passing, failing and unparseable samples, with feedback, in one call."""
    cfg = TaskConfig(name="code", source="code", sandbox=ALLOW, question_field=None, solution_field=None)
    task = load_task(cfg)
    p = next(p for p in task.train if p.id == "code-square")
    cands = [{"prompt_id": p.id, "sample_idx": 0, "completion": p.solution},
             {"prompt_id": p.id, "sample_idx": 1, "completion": "```python\ndef square(n):\n    return n + n\n```"},
             {"prompt_id": p.id, "sample_idx": 2, "completion": "no idea"}]
    records, counts = verify(None, [], cands, VerifyConfig(task=cfg))
    assert [r["status"] for r in records] == ["correct", "incorrect", "unparseable"]
    assert records[1]["feedback"] == "failed: assert square(3) == 9" and records[0]["reward"] == 1.0
    assert counts == {"correct": 1, "incorrect": 1, "unparseable": 1}


def test_code_tasks_are_refused_without_a_sandbox_unless_allowed(monkeypatch):
    from stages import sandbox

    python = sandbox._setup()[1]
    monkeypatch.setattr(sandbox, "_setup", lambda: ("rlimits", python))
    _load.cache_clear()  # loaded tasks are cached per config
    with pytest.raises(TaskInputError, match="task.sandbox.weaker_isolation=true"):
        load_task(TaskConfig(name="code", source="code", question_field=None, solution_field=None))
    task = load_task(TaskConfig(name="code", source="code", question_field=None, solution_field=None,
                                sandbox={"weaker_isolation": True}))
    assert task.notices[0].startswith("sandbox: WEAKER")
    _load.cache_clear()
