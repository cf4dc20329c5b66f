"""Tasks: where questions, gold answers and gold solutions come from.

Two sources, one record type (`Problem`):

* `arithmetic_problems` — the built-in task: procedurally generated, seeded arithmetic word problems of
  several kinds (shopping sums, giving away, equal groups, sharing, comparisons, two-step purchases) and
  three difficulties. Every problem carries its gold answer and a gold step-by-step solution that ends in
  the same "Answer: <number>" line the prompt asks for, so IRPO can add it to the winners.
  The held-out split is drawn from its own random stream and any question text that also appears in it
  is removed from the train split: the two never overlap.
* `load_problems` — your own data: a local .jsonl/.json/.parquet/.csv file or any `datasets.load_dataset`
  source, with configurable field names. A missing file, a field that no row has, or an empty split is an
  error naming the file and field; individual rows with an empty question/answer are skipped and
  counted (`LoadedTask.skipped`).

    python -c "from stages.tasks import arithmetic_problems as a; print(a(3, seed=0, split='train')[0])"
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Problem:
    id: str  # stable id: source-specific, unique within the task
    question: str  # the question text (the prompt template wraps it)
    answer: str  # gold final answer, as text ("42", "3/4", "\\frac{1}{2}")
    solution: str | None = None  # gold step-by-step solution in the prompted answer format, if any
    kind: str = ""  # problem family (built-in task) or "" for external data
    difficulty: int = 0  # 1..3 for the built-in tasks, 0 when unknown
    checker: str = "answer"  # answer: compare final answers | constraints: rule checks (answer = JSON list)

    def target(self):
        """What a completion is checked against: the gold answer, or the list of constraints."""
        return json.loads(self.answer) if self.checker == "constraints" else self.answer


@dataclass
class TaskConfig:
    """Where problems come from and how they are asked.

    source: "arithmetic" (built-in word problems), "constraints" (built-in instructions with rule-checked
        constraints, stages/constraints.py) or a path to a .jsonl/.json/.parquet/.csv file, or a
        `datasets.load_dataset` name (a hub id or a local dataset folder) — the hub works only online.
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
    # which problems are used
    prompts_per_iteration: int | None = None  # None = the whole train split every iteration (paper)
    max_test: int | None = None  # evaluate on the first max_test held-out problems (None = all)

    def __post_init__(self) -> None:
        if self.prompts_per_iteration is not None and self.prompts_per_iteration < 1:
            raise ValueError(f"task.prompts_per_iteration must be >= 1 or null, got {self.prompts_per_iteration}")
        if self.max_test is not None and self.max_test < 1:
            raise ValueError(f"task.max_test must be >= 1 or null, got {self.max_test}")
        if "{question}" not in self.prompt_template:
            raise ValueError("task.prompt_template must contain the placeholder {question}")
        if self.source in ("arithmetic", "constraints"):
            if self.num_train < 1 or self.num_test < 1:
                raise ValueError("task.num_train and task.num_test must be >= 1")
            bad = [d for d in self.difficulties if d not in (1, 2, 3)]
            if bad or not self.difficulties:
                raise ValueError(f"task.difficulties must be a non-empty subset of [1, 2, 3], got {self.difficulties}")


@dataclass
class LoadedTask:
    train: list[Problem]
    test: list[Problem]
    skipped: dict[str, int] = field(default_factory=dict)  # rows skipped while loading, by reason

    def messages(self, problem: Problem, cfg: TaskConfig) -> list[dict]:
        """The chat prompt for one problem (TRL's conversational format)."""
        msgs = [{"role": "system", "content": cfg.system_prompt}] if cfg.system_prompt else []
        return msgs + [{"role": "user", "content": cfg.prompt_template.format(question=problem.question)}]


def load_task(cfg: TaskConfig) -> LoadedTask:
    """Both splits of the configured task, validated. Cheap: no model is involved."""
    if cfg.source in ("arithmetic", "constraints"):
        from stages.constraints import constraint_problems

        make = arithmetic_problems if cfg.source == "arithmetic" else constraint_problems
        test = make(cfg.num_test, seed=cfg.seed, split="test", difficulties=cfg.difficulties)
        seen = {p.question for p in test}
        train = [p for p in make(cfg.num_train + len(test), seed=cfg.seed, split="train",
                                 difficulties=cfg.difficulties) if p.question not in seen]
        task = LoadedTask(train=train[: cfg.num_train], test=test)
    else:
        task = load_problems(cfg)
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


# --------------------------------------------------------------------------- built-in arithmetic task

NAMES = ["Ava", "Ben", "Chloe", "Dev", "Elena", "Farid", "Grace", "Hugo", "Iris", "Jamal", "Kira", "Leo",
         "Maya", "Noah", "Olga", "Priya", "Quinn", "Rosa", "Sam", "Tariq", "Uma", "Victor", "Wen", "Yusuf"]
ITEMS = ["apples", "marbles", "stickers", "pencils", "cookies", "stamps", "shells", "cards", "books", "beads",
         "coins", "balloons", "oranges", "buttons", "crayons", "tickets"]
CONTAINERS = ["boxes", "bags", "jars", "baskets", "crates", "packs", "trays", "shelves"]
SCALE = {1: (2, 20), 2: (10, 99), 3: (100, 999)}  # operand ranges per difficulty


def _answer_line(value: int) -> str:
    return f"Answer: {value}"


def _add(rng: random.Random, d: int):
    lo, hi = SCALE[d]
    n, item = rng.choice(NAMES), rng.choice(ITEMS)
    xs = [rng.randint(lo, hi) for _ in range(1 + d)]
    parts = ", then ".join(f"gets {x} more" for x in xs[1:])
    q = f"{n} has {xs[0]} {item}. {n} {parts}. How many {item} does {n} have now?"
    steps, total = [], xs[0]
    for x in xs[1:]:
        steps.append(f"{total} + {x} = {total + x}")
        total += x
    return q, total, steps


def _sub(rng: random.Random, d: int):
    lo, hi = SCALE[d]
    n, m, item = *rng.sample(NAMES, 2), rng.choice(ITEMS)
    give = [rng.randint(lo, hi) for _ in range(d)]
    start = sum(give) + rng.randint(lo, hi)
    gives = " and then ".join(f"gives {g} to {m}" if i == 0 else f"gives {g} more away" for i, g in enumerate(give))
    q = f"{n} starts with {start} {item} and {gives}. How many {item} does {n} have left?"
    steps, left = [], start
    for g in give:
        steps.append(f"{left} - {g} = {left - g}")
        left -= g
    return q, left, steps


def _mul(rng: random.Random, d: int):
    groups = rng.randint(2, [9, 15, 40][d - 1])
    each = rng.randint(2, [9, 25, 60][d - 1])
    n, item, box = rng.choice(NAMES), rng.choice(ITEMS), rng.choice(CONTAINERS)
    q = f"{n} has {groups} {box} with {each} {item} in each. How many {item} are there in total?"
    return q, groups * each, [f"{groups} x {each} = {groups * each}"]


def _div(rng: random.Random, d: int):
    people = rng.randint(2, [6, 12, 25][d - 1])
    each = rng.randint(2, [9, 30, 80][d - 1])
    n, item = rng.choice(NAMES), rng.choice(ITEMS)
    total = people * each
    q = f"{n} shares {total} {item} equally among {people} friends. How many {item} does each friend get?"
    return q, each, [f"{total} / {people} = {each}"]


def _compare(rng: random.Random, d: int):
    lo, hi = SCALE[d]
    n, m, item = *rng.sample(NAMES, 2), rng.choice(ITEMS)
    a = rng.randint(lo, hi)
    b = a + rng.randint(1, hi)
    q = f"{n} has {a} {item} and {m} has {b} {item}. How many more {item} does {m} have than {n}?"
    return q, b - a, [f"{b} - {a} = {b - a}"]


def _two_step(rng: random.Random, d: int):
    n, item = rng.choice(NAMES), rng.choice(ITEMS)
    count = rng.randint(2, [6, 12, 30][d - 1])
    price = rng.randint(2, [9, 20, 50][d - 1])
    cost = count * price
    paid = cost + rng.randint(1, [10, 50, 200][d - 1])
    q = (f"{n} buys {count} {item} at {price} dollars each and pays with {paid} dollars. "
         f"How many dollars of change does {n} get?")
    return q, paid - cost, [f"{count} x {price} = {cost}", f"{paid} - {cost} = {paid - cost}"]


KINDS = {"add": _add, "sub": _sub, "mul": _mul, "div": _div, "compare": _compare, "two_step": _two_step}


def arithmetic_problems(n: int, seed: int, split: str, difficulties: list[int] | None = None) -> list[Problem]:
    """`n` distinct problems of the given split. Deterministic in (seed, split); kinds and difficulties
    are cycled so every mix is represented."""
    difficulties = difficulties or [1, 2, 3]
    rng = random.Random(f"{seed}:{split}")
    out: list[Problem] = []
    seen: set[str] = set()
    kinds = sorted(KINDS)
    i = 0
    while len(out) < n:
        kind, d = kinds[i % len(kinds)], difficulties[(i // len(kinds)) % len(difficulties)]
        i += 1
        q, answer, steps = KINDS[kind](rng, d)
        if q in seen:
            if i > 50 * n + 1000:
                raise ValueError(f"could not draw {n} distinct arithmetic problems; ask for fewer")
            continue
        seen.add(q)
        solution = "\n".join([f"Step {k}: {s}" for k, s in enumerate(steps, 1)] + [_answer_line(answer)])
        pid = f"arith-{split}-{len(out):05d}"
        out.append(Problem(id=pid, question=q, answer=str(answer), solution=solution, kind=kind, difficulty=d))
    return out


# --------------------------------------------------------------------------- your own data


def _read_rows(cfg: TaskConfig, split: str) -> list[dict]:
    import datasets

    src = cfg.source
    path = Path(src).expanduser()
    suffix = "".join(path.suffixes[-1:]).lower()
    local_file = suffix in (".jsonl", ".json", ".parquet", ".csv")
    if local_file:
        if not path.is_file():
            raise FileNotFoundError(f"task.source: file not found: {path}")
        builder = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}[suffix]
        try:
            ds = datasets.load_dataset(builder, data_files={"train": str(path)}, split="train")
        except Exception as e:  # malformed file: name it
            raise ValueError(f"task.source: could not read {path}: {type(e).__name__}: {e}") from e
    else:
        try:
            ds = datasets.load_dataset(src, cfg.subset, split=split)
        except Exception as e:
            raise ValueError(f"task.source: could not load split {split!r} of dataset {src!r}: "
                             f"{type(e).__name__}: {e}") from e
    return ds.to_list()


def _rows_to_problems(rows: list[dict], cfg: TaskConfig, where: str, skipped: dict[str, int]) -> list[Problem]:
    if not rows:
        raise ValueError(f"{where}: the dataset is empty")
    for fld in (cfg.question_field, cfg.answer_field, cfg.solution_field, cfg.id_field):
        if fld is not None and not any(fld in r for r in rows):
            have = sorted(rows[0].keys())
            raise KeyError(f"{where}: no row has the field {fld!r} (fields: {have}); "
                           f"set task.question_field / task.answer_field / task.solution_field / task.id_field")
    out, ids, questions = [], set(), set()
    for r in rows:
        q, a = r.get(cfg.question_field), r.get(cfg.answer_field)
        if not isinstance(q, str) or not q.strip():
            skipped["empty_question"] = skipped.get("empty_question", 0) + 1
            continue
        if a is None or (isinstance(a, str) and not a.strip()) or isinstance(a, (list, dict)):
            skipped["bad_answer"] = skipped.get("bad_answer", 0) + 1
            continue
        sol = r.get(cfg.solution_field) if cfg.solution_field else None
        sol = sol if isinstance(sol, str) and sol.strip() else None
        pid = str(r[cfg.id_field]) if cfg.id_field and r.get(cfg.id_field) is not None else \
            hashlib.sha1(q.encode()).hexdigest()[:12]
        if pid in ids or q.strip() in questions:
            skipped["duplicate"] = skipped.get("duplicate", 0) + 1
            continue
        ids.add(pid)
        questions.add(q.strip())
        out.append(Problem(id=pid, question=q.strip(), answer=str(a).strip(), solution=sol))
    if not out:
        raise ValueError(f"{where}: no usable rows ({skipped})")
    return out


def load_problems(cfg: TaskConfig) -> LoadedTask:
    """Problems from a local file or a `datasets` source. A file holds one split: the held-out split is
    carved out of it (test_size rows, seeded shuffle) unless test_split names another source."""
    skipped: dict[str, int] = {}
    rows = _read_rows(cfg, cfg.train_split)
    problems = _rows_to_problems(rows, cfg, f"task.source={cfg.source} (split {cfg.train_split})", skipped)
    local_file = Path(cfg.source).suffix.lower() in (".jsonl", ".json", ".parquet", ".csv")
    if cfg.test_split is not None and not local_file:
        test = _rows_to_problems(_read_rows(cfg, cfg.test_split), cfg,
                                 f"task.source={cfg.source} (split {cfg.test_split})", skipped)
        test_q = {p.question for p in test}
        train = [p for p in problems if p.question not in test_q]
        if len(train) < len(problems):
            skipped["in_test_split"] = len(problems) - len(train)
    else:
        if len(problems) < 2:
            raise ValueError(f"task.source={cfg.source}: need at least 2 rows to split train/test")
        order = list(problems)
        random.Random(cfg.seed).shuffle(order)
        n_test = min(cfg.test_size, len(order) // 2)
        test, train = order[:n_test], order[n_test:]
    return LoadedTask(train=train, test=test, skipped=skipped)
