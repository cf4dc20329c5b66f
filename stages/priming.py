"""Priming (Gandhi et al. 2025, arXiv 2503.01307 §4): fine-tune M0 on Countdown chains of thought that show chosen
reasoning behaviors before the iterations (`bootstrap=priming bootstrap.condition=...`).

The paper's traces were written by a large model and filtered by a classifier. Here a program solves each problem by
exhaustive search over pairs of numbers (Countdown with 3-4 numbers has at most ~10^4 orders of combination) and
writes the chain itself, so every trace shows exactly the behaviors its condition asks for — tests/test_priming.py
checks each condition with the project's own behavior detectors (stages/behaviors.py) and the task's checker.

Conditions:
* ``all`` — failed attempts, each checked against the target (verification) and abandoned for a fresh start from the
  given numbers (backtracking); then working backwards from the target (backward chaining) to a named intermediate
  value (subgoal), which is derived; the final result is checked against the target.
* ``backtracking`` — the failed attempts and restarts only, then the solution's equations.
* ``no_behaviors`` — the solution's equations, straight to the answer.
* ``empty`` — the answer line alone.
* ``filler`` — filler as long as the problem's ``all`` trace, then the answer line.
* ``wrong`` — the ``all`` trace's behaviors, but the last equation combines the subgoal wrongly: a well-formed answer
  (each number once) that misses the target.
* ``unprimed`` — no fine-tuning at all: the control arm of the same sweep (the run has no bootstrap stage).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from fractions import Fraction

CONDITIONS = ("all", "backtracking", "no_behaviors", "empty", "filler", "wrong", "unprimed")
OPS = ("+", "-", "*", "/")


@dataclass(frozen=True)
class Node:
    value: Fraction
    expr: str  # with parentheses around every compound operand
    steps: tuple[tuple[str, str, str, Fraction], ...] = ()  # (left shown, op, right shown, result) in order
    left: "Node | None" = None  # the last step's operands (None: a given number)
    op: str = ""
    right: "Node | None" = None

    @property
    def leaf(self) -> bool:
        return self.left is None


def _show(x: Fraction) -> str:
    return str(x.numerator) if x.denominator == 1 else f"{x.numerator}/{x.denominator}"


def _apply(a: Fraction, op: str, b: Fraction) -> Fraction | None:
    """Countdown's arithmetic kept to what a person writes: non-negative integers, exact division only."""
    if op == "+":
        return a + b
    if op == "-":
        return a - b if a >= b else None
    if op == "*":
        return a * b
    return a / b if b and (a / b).denominator == 1 else None


def _combine(x: Node, op: str, y: Node) -> Node | None:
    v = _apply(x.value, op, y.value)
    if v is None:
        return None
    ex = x.expr if x.leaf else f"({x.expr})"
    ey = y.expr if y.leaf else f"({y.expr})"
    return Node(v, f"{ex} {op} {ey}", x.steps + y.steps + ((_show(x.value), op, _show(y.value), v),), x, op, y)


def derivations(numbers: list[int], rng: random.Random, limit: int = 20000) -> list[Node]:
    """Every way (up to `limit`) to combine all the numbers into one value, in a seeded search order."""
    out: list[Node] = []

    def search(items: list[Node]) -> None:
        if len(out) >= limit:
            return
        if len(items) == 1:
            out.append(items[0])
            return
        pairs = [(i, j) for i in range(len(items)) for j in range(len(items)) if i != j]
        rng.shuffle(pairs)
        for i, j in pairs:
            rest = [n for k, n in enumerate(items) if k not in (i, j)]
            for op in OPS:
                node = _combine(items[i], op, items[j])
                if node is not None:
                    search(rest + [node])

    search([Node(Fraction(n), str(n)) for n in numbers])
    return out


def _split(d: Node) -> tuple[Node, Node, bool] | None:
    """The last step as (the given number, the compound operand = the subgoal, whether the number is on the
    left); None when both operands are given numbers or both compound ((a + b) * (c + d))."""
    if d.leaf or d.left.leaf == d.right.leaf:
        return None
    return (d.left, d.right, True) if d.left.leaf else (d.right, d.left, False)


@dataclass
class Plan:
    """What a trace is written from: failed attempts, the solution (whose last step joins a given number to the
    subgoal) and, for the wrong-answer condition, the subgoal joined to that number by another operation."""
    numbers: list[int]
    target: Fraction
    failures: list[Node]
    solution: Node
    wrong: Node | None


def plan(numbers: list[int], target: int | Fraction, seed: int | str, attempts: int = 2) -> Plan | None:
    """A solved problem with up to `attempts` failed tries, None when the search finds no solution with
    non-negative integer steps whose last step joins a given number to an intermediate value."""
    rng = random.Random(f"{seed}:{sorted(numbers)}:{target}")
    target = Fraction(target)
    every = derivations(numbers, rng)
    solutions = [d for d in every if d.value == target and _split(d)]
    if not solutions:
        return None
    solution = rng.choice(solutions)
    shown, starts = {target}, {solution.steps[0]}
    failures = []
    for d in every:  # the search's own dead ends: no step reaches the target, each starts and ends somewhere new
        if len(failures) == attempts:
            break
        if d.value not in shown and d.steps[0] not in starts and all(r != target for *_, r in d.steps):
            failures.append(d)
            shown.add(d.value)
            starts.add(d.steps[0])
    known, sub, known_left = _split(solution)
    wrong = None
    for op in OPS:
        w = _combine(known, op, sub) if known_left else _combine(sub, op, known)
        if op != solution.op and w is not None and w.value != target:
            wrong = w
            break
    return Plan(list(numbers), target, failures, solution, wrong)


def _eqs(steps) -> str:
    return ", ".join(f"{a} {op} {b} = {_show(r)}" for a, op, b, r in steps)


def _inverse(target: Fraction, known: int, op: str, known_first: bool) -> tuple[str, str]:
    """The backward step from the target: (equation starting with the target, its result shown)."""
    t, k = _show(target), str(known)
    if op == "+":
        return f"{t} - {k}", _show(target - known)
    if op == "*":
        return f"{t} / {k}", _show(target / known)
    if op == "-":
        return (f"{k} - {t}", _show(known - target)) if known_first else (f"{t} + {k}", _show(target + known))
    return (f"{k} / {t}", _show(known / target)) if known_first else (f"{t} * {k}", _show(target * known))


def trace(p: Plan, condition: str) -> str:
    """The chain of thought and answer line of one condition (see the module docstring)."""
    t = _show(p.target)
    nums = ", ".join(map(str, p.numbers))
    answer = f"Answer: {p.solution.expr}"
    if condition == "empty":
        return answer
    if condition == "filler":
        n = len(trace(p, "all"))
        return (". " * (max(n - len(answer), 2) // 2)).rstrip() + "\n" + answer
    if condition == "no_behaviors":
        return f"{_eqs(p.solution.steps)}.\n{answer}"
    lines = [f"The numbers are {nums} and the target is {t}."]
    for k, f in enumerate(p.failures):
        lines.append(f"{'Try' if k == 0 else 'Now'} {_eqs(f.steps)}.")
        if condition == "backtracking":
            lines.append("That does not work, so let me start again from the numbers.")
        else:
            lines.append(f"{_show(f.value)} is not {t}. That fails, so let me start again from the numbers.")
    if condition == "backtracking":
        return "\n".join(lines + [f"{_eqs(p.solution.steps)}.", answer])
    known, sub, known_left = _split(p.solution)
    back, need = _inverse(p.target, int(known.value), p.solution.op, known_left)
    rest = list(p.numbers)
    rest.remove(int(known.value))
    lines.append(f"Let me work backwards from {t}: {back} = {need}. So a subgoal is to make {need} from "
                 f"{', '.join(map(str, rest))}.")
    lines.append(f"{_eqs(sub.steps)}. That makes {need}, the subgoal.")
    final = p.solution.steps[-1]
    if condition == "wrong":
        w = p.wrong.steps[-1]
        lines.append(f"Then {w[0]} {w[1]} {w[2]} = {_show(w[3])}. {_show(w[3])} is not {t}, but I will answer with it.")
        return "\n".join(lines + [f"Answer: {p.wrong.expr}"])
    lines.append(f"Then {final[0]} {final[1]} {final[2]} = {t}, which equals the target {t}.")
    return "\n".join(lines + [answer])


@dataclass
class PrimingConfig:
    condition: str = "all"  # all | backtracking | no_behaviors | empty | filler | wrong | unprimed
    examples: int = 256  # training problems turned into traces (those the search cannot solve are skipped)
    attempts: int = 2  # failed tries shown before the solution (all, backtracking, wrong)
    seed: int = 0
    train: object = None  # a stages.train.TrainConfig (trainer sft)
    kind = "priming"  # (a class attribute: not part of the stage's identity)

    def __post_init__(self) -> None:
        if self.condition not in CONDITIONS:
            raise ValueError(f"condition must be one of {list(CONDITIONS)}, got {self.condition!r}")
        if self.examples < 1 or self.attempts < 0:
            raise ValueError("examples must be >= 1 and attempts >= 0")


def priming_examples(problems: list, messages, spec, cfg: PrimingConfig) -> tuple[list[dict], dict]:
    """SFT records (prompt = the task's own prompt of the problem, completion = its trace) for up to
    `cfg.examples` problems; `spec(problem)` gives (numbers, target)."""
    out, unsolved = [], 0
    for prob in problems[: cfg.examples]:
        numbers, target = spec(prob)
        p = plan([int(n) for n in numbers], target, cfg.seed, cfg.attempts)
        if p is None or (cfg.condition == "wrong" and p.wrong is None):
            unsolved += 1
            continue
        out.append({"prompt_id": prob.id, "kind": f"priming-{cfg.condition}", "score": None,
                    "prompt": messages(prob), "completion": [{"role": "assistant", "content": trace(p, cfg.condition)}]})
    random.Random(f"{cfg.seed}:priming").shuffle(out)
    return out, {"examples": len(out), "unsolved": unsolved,
                 "mean_chars": sum(len(r["completion"][0]["content"]) for r in out) / max(len(out), 1)}
