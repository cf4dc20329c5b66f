"""The built-in arithmetic task (``task=arithmetic``): procedurally generated, seeded word problems of several
kinds (shopping sums, giving away, equal groups, sharing, comparisons, two-step purchases) and three
difficulties. Every problem carries its gold answer and a gold step-by-step solution that ends in the same
"Answer: <number>" line the prompt asks for, so IRPO can add it to the winners. The held-out split is drawn
from its own random stream and any question text that also appears in it is removed from the train split:
the two never overlap. Its checker is the final-answer checker (stages/verify.py: extract the answer line,
compare with math-verify) and its feedback says what was expected and what was found.

    python -c "from stages.tasks.arithmetic import arithmetic_problems as a; print(a(3, seed=0, split='train')[0])"
"""

from __future__ import annotations

import random

from stages.tasks import LoadedTask, Problem, TaskConfig, generated
from stages.verify import check_answer

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


def load(cfg: TaskConfig) -> LoadedTask:
    return generated(arithmetic_problems, cfg, check_answer)
