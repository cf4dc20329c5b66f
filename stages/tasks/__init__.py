"""Tasks: where problems come from, how they are asked, and how an answer is checked. One module per task:

* ``arithmetic`` (stages/tasks/arithmetic.py) — built-in seeded arithmetic word problems with gold solutions;
* ``constraints`` (stages/tasks/constraints.py) — built-in instructions with rule-checked constraints;
* ``gym`` (stages/tasks/gym.py) — any `reasoning-gym` generator (countdown, gsm_symbolic, basic_arithmetic, ...);
* ``code`` / ``humaneval`` / a file with ``layout: humaneval|mbpp`` (stages/tasks/code.py) — Python functions
  checked by running their tests in the sandbox (stages/sandbox.py);
* ``file`` (stages/tasks/files.py) — your own data: a local file or a `datasets` source (GSM8K's `#### N`
  rationales are read as gold answer + gold solution).

Each module has ``load(cfg) -> LoadedTask``; the loaded task owns its problems (train and held-out splits that
never overlap), the chat prompt of a problem (`LoadedTask.messages`) and its checker (`LoadedTask.check`: a
`Verdict` with status, score and feedback text a model could act on). Nothing else decides how an answer is
checked: a new task is a module with a ``load`` function and one line in `SOURCES`.

    from stages.tasks import TaskConfig, load_task
    task = load_task(TaskConfig())
    task.check(task.test[0], "... Answer: 12")     # Verdict(status='incorrect', score=0.0, feedback='...')
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import random
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable

from stages.sandbox import SandboxConfig


@dataclass(frozen=True)
class Problem:
    id: str  # stable id: source-specific, unique within the task
    question: str  # the question text (the prompt template wraps it)
    answer: str  # gold final answer as text ("42", "3/4"); the constraints task: its constraint list as JSON
    solution: str | None = None  # gold step-by-step solution in the prompted answer format, if any
    kind: str = ""  # problem family (built-in task) or "" for external data
    difficulty: int = 0  # 1..3 for the built-in tasks, 0 when unknown


SOURCES = {"arithmetic": "stages.tasks.arithmetic", "constraints": "stages.tasks.constraints",
           "gym": "stages.tasks.gym", "code": "stages.tasks.code", "humaneval": "stages.tasks.code"}  # else: a file
LAYOUTS = ("qa", "humaneval", "mbpp")  # a file's rows: question/answer (stages/tasks/files.py) or code problems


class TaskInputError(ValueError):
    """The task's input (a file, a generator's options, the sandbox it needs) is unusable: one line naming the
    file and line, the field or the option. Raised before any model loads."""


@dataclass
class TaskConfig:
    """Where problems come from and how they are asked.

    source: "arithmetic" (built-in word problems), "constraints" (built-in instructions with rule-checked
        constraints, stages/tasks/constraints.py), "gym" (a reasoning-gym generator: `dataset`, `options`),
        "code" (built-in Python functions), "humaneval", or a path to a .jsonl/.json/.parquet/.csv file, or a
        `datasets.load_dataset` name (a hub id or a local dataset folder) — the hub works only online.
    layout: a file's rows: "qa" (question/answer fields), or code problems in "humaneval" or "mbpp" layout.
    prompt_template: the user message; `{question}` is replaced by the question.
    system_prompt: optional system message ("" = none; the chat template may add its own default).
    """

    name: str = "arithmetic"
    source: str = "arithmetic"
    prompt_template: str = "{question}"
    system_prompt: str = ""
    # built-in task
    num_train: int = 2000  # problems in the train split
    num_test: int = 200  # problems in the held-out split
    difficulties: list[int] = field(default_factory=lambda: [1, 2, 3])
    seed: int = 1234  # the task's own seed: changing it changes the problems
    # external data
    train_split: str = "train"
    test_split: str | None = "test"  # None: carve test_size rows out of train_split (seeded)
    test_size: int = 200
    question_field: str = "question"
    answer_field: str = "answer"
    solution_field: str | None = None  # optional gold solution column
    id_field: str | None = None  # optional stable id column (default: content hash)
    subset: str | None = None  # load_dataset config name
    layout: str = "qa"  # qa | humaneval | mbpp
    tests_field: str | None = None  # code files: the tests (default: test / test_list by layout)
    entry_field: str | None = None  # code files: the function's name (default: entry_point; MBPP: from the tests)
    # reasoning-gym (source: gym)
    dataset: str = ""  # the generator's name: countdown, gsm_symbolic, basic_arithmetic, chain_sum, ...
    options: dict = field(default_factory=dict)  # the generator's config fields, passed through (difficulty, ...)
    # code tasks: how model-written programs run (stages/sandbox.py)
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)
    # which problems are used
    prompts_per_iteration: int | None = None  # None = the whole train split every iteration (paper)
    max_test: int | None = None  # evaluate on the first max_test held-out problems (None = all)

    def __post_init__(self) -> None:
        if isinstance(self.sandbox, dict):
            try:
                self.sandbox = SandboxConfig(**self.sandbox)
            except TypeError as e:
                raise ValueError(f"task.sandbox: {e}") from None
        if self.layout not in LAYOUTS:
            raise ValueError(f"task.layout must be one of {list(LAYOUTS)}, got {self.layout!r}")
        if self.layout != "qa" and self.source in SOURCES:  # task=code_file without a file: not the built-in task
            raise ValueError(f"task.source: task.layout={self.layout} reads code problems from your file, and "
                             f"{self.source!r} is a built-in task: set task.source=<file> "
                             "(e.g. task=code_file task.source=data/mbpp.jsonl task.layout=mbpp)")
        if self.source == "gym" and not self.dataset:
            raise ValueError("task.dataset: name the reasoning-gym generator (task=gym task.dataset=countdown)")
        if self.prompts_per_iteration is not None and self.prompts_per_iteration < 1:
            raise ValueError(f"task.prompts_per_iteration must be >= 1 or null, got {self.prompts_per_iteration}")
        if self.max_test is not None and self.max_test < 1:
            raise ValueError(f"task.max_test must be >= 1 or null, got {self.max_test}")
        if "{question}" not in self.prompt_template:
            raise ValueError("task.prompt_template must contain the placeholder {question}")
        if self.test_size < 1:
            raise ValueError(f"task.test_size must be >= 1, got {self.test_size}")
        if self.source in ("arithmetic", "constraints", "gym"):
            if self.num_train < 1 or self.num_test < 1:
                raise ValueError("task.num_train and task.num_test must be >= 1")
        if self.source in ("arithmetic", "constraints", "code"):
            bad = [d for d in self.difficulties if d not in (1, 2, 3)]
            if bad or not self.difficulties:
                raise ValueError(f"task.difficulties must be a non-empty subset of [1, 2, 3], got {self.difficulties}")


@dataclass
class LoadedTask:
    name: str
    train: list[Problem]
    test: list[Problem]
    checker: Callable  # (problem, text, VerifyConfig) -> Verdict: the task's own check of one answer
    skipped: dict[str, int] = field(default_factory=dict)  # rows skipped while loading, by reason
    kind: str = "answer"  # what the checker reads: answer (a final answer: lenient accuracy applies), rules, program
    batch_checker: Callable | None = None  # ([(problem, text)], VerifyConfig) -> [Verdict], e.g. programs in parallel
    notices: list[str] = field(default_factory=list)  # one-line facts a run prints once (the sandbox's isolation)

    def messages(self, problem: Problem, cfg: TaskConfig) -> list[dict]:
        """The chat prompt for one problem (TRL's conversational format)."""
        msgs = [{"role": "system", "content": cfg.system_prompt}] if cfg.system_prompt else []
        return msgs + [{"role": "user", "content": cfg.prompt_template.format(question=problem.question)}]

    def check(self, problem: Problem, text: str, cfg=None):
        """The task's verdict on one answer `text` (stages/verify.py: Verdict). cfg: VerifyConfig (extractors)."""
        from stages.verify import VerifyConfig

        return self.checker(problem, text, cfg or VerifyConfig())

    def check_all(self, items: list[tuple[Problem, str]], cfg=None) -> list:
        """Verdicts for (problem, text) pairs: the batch checker where the task has one (sandboxed programs run in
        parallel), else one at a time."""
        from stages.verify import VerifyConfig

        cfg = cfg or VerifyConfig()
        if self.batch_checker is not None:
            return self.batch_checker(items, cfg)
        return [self.checker(p, text, cfg) for p, text in items]

    def problem(self, prompt_id: str) -> Problem:
        if not hasattr(self, "_by_id"):
            self._by_id = {p.id: p for p in self.train + self.test}
        return self._by_id[prompt_id]

    def prompt_records(self, problems: list[Problem], cfg: TaskConfig) -> list[dict]:
        """The prompts stage's records: the chat prompt plus the problem's fields (for pairs: the gold solution)."""
        return [{"prompt_id": p.id, "messages": self.messages(p, cfg), "question": p.question, "answer": p.answer,
                 "solution": p.solution, "kind": p.kind, "difficulty": p.difficulty} for p in problems]


def generated(make: Callable, cfg: TaskConfig, checker: Callable, kind: str = "answer") -> LoadedTask:
    """A built-in task from its generator `make(n, seed, split, difficulties)`: the held-out split first, then
    train problems whose text is not in it, so the two never overlap."""
    test = make(cfg.num_test, seed=cfg.seed, split="test", difficulties=cfg.difficulties)
    seen = {p.question for p in test}
    train = [p for p in make(cfg.num_train + len(test), seed=cfg.seed, split="train", difficulties=cfg.difficulties)
             if p.question not in seen]
    return LoadedTask(name=cfg.name, train=train[: cfg.num_train], test=test, checker=checker, kind=kind)


def load_task(cfg: TaskConfig) -> LoadedTask:
    """Both splits of the configured task, validated. Cheap: no model is involved. Cached per config, since
    the checking stages load the task they check against from its config."""
    path = Path(cfg.source).expanduser()
    stamp = (path.stat().st_mtime_ns, path.stat().st_size) if path.is_file() else None  # an edited file reloads
    return _load(json.dumps(dataclasses.asdict(cfg), sort_keys=True), stamp)


@lru_cache(maxsize=8)
def _load(key: str, stamp) -> LoadedTask:
    cfg = TaskConfig(**json.loads(key))
    module = importlib.import_module(SOURCES.get(cfg.source) or
                                     ("stages.tasks.files" if cfg.layout == "qa" else "stages.tasks.code"))
    task = module.load(cfg)
    if cfg.max_test is not None:
        task.test = task.test[: cfg.max_test]
    return task


def select_prompts(problems: list[Problem], iteration: int, per_iteration: int | None, seed: int) -> list[Problem]:
    """The training questions of `iteration` (1-based): the whole split, or the next `per_iteration`
    questions of one seeded shuffle, wrapping around when the split runs out."""
    if per_iteration is None:
        return list(problems)
    order = list(problems)
    random.Random(seed).shuffle(order)
    start = (iteration - 1) * per_iteration
    return [order[(start + i) % len(order)] for i in range(min(per_iteration, len(order)))]
