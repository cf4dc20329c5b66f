"""Tasks from `reasoning-gym` (``task=gym task.dataset=<name>``): its offline, seeded generators with their
options passed through (`task.options`: the generator's config fields, e.g. ``min_numbers``, ``difficulty``; or
``curriculum_level: N`` for a generator with a curriculum, which sets every attribute to that level).

Splits: the held-out problems come from seed `task.seed`, the train problems from another stream with every
question that is also held out removed — the two never overlap. Gold answers come from the generator; a gold
solution is used when the generator gives one (gsm_symbolic's `answer_cot`, read like GSM8K), else IRPO runs
without gold winners (the run says so in one line).

Checking never evaluates model text with Python's eval or sympy's parser:
* numeric answers (basic_arithmetic, chain_sum, gsm_symbolic, ...: the gold answer is a number) use the project's
  final-answer checker (stages/verify.py: the "Answer:" line, compared with math-verify);
* Countdown uses `check_countdown`, an AST walk over the answer expression with exact fractions: only the given
  numbers, each used exactly once (as a multiset), only + - * / and parentheses (a minus sign may also negate, as
  the generator's own answers do), within 1e-5 of the target;
* any other generator: the answer span (the "Answer:" line) handed to the generator's own `score_answer`; its
  score is the verdict's score, correct at 1.0 — those scorers are the library's, not audited here.
"""

from __future__ import annotations

import ast
import hashlib
from collections import Counter
from fractions import Fraction
from functools import partial

from stages.tasks import LoadedTask, Problem, TaskConfig, TaskInputError
from stages.tasks.files import gsm8k_answer
from stages.verify import (CORRECT, INCORRECT, UNPARSEABLE, Verdict, _plain, check_answer, evaluate_expression,
                            extract_answer)

MAX_EXPR = 200  # characters of an expression the Countdown checker reads


def _dataset(cfg: TaskConfig, size: int, seed: int):
    try:
        from reasoning_gym.factory import DATASETS, create_curriculum, has_curriculum
    except ImportError as e:  # an optional extra: its dependency pycosat has no wheel and is compiled on install
        raise TaskInputError(f"task=gym needs reasoning-gym ({e}): pip install -e '.[gym]' (or pip install "
                             "'reasoning-gym>=0.1.25,<0.2'); it builds pycosat, a small C extension, so it needs a "
                             "C compiler") from None

    name = cfg.dataset
    if name not in DATASETS:
        close = sorted(n for n in DATASETS if name[:4] in n)[:8]
        raise TaskInputError(f"task.dataset: reasoning-gym has no generator {name!r}"
                             + (f" (similar: {close})" if close else f" ({len(DATASETS)} available)"))
    options = dict(cfg.options)
    for key, ours in (("size", "task.num_train and task.num_test"), ("seed", "task.seed")):
        if key in options:
            raise TaskInputError(f"task.options.{key} is set by the pipeline: use {ours}")
    level = options.pop("curriculum_level", None)
    ds_cls, cfg_cls = DATASETS[name]
    try:
        if level is not None:
            if not has_curriculum(name):
                raise TaskInputError(f"task.options.curriculum_level: {name} has no curriculum; set its options")
            curriculum = create_curriculum(name)
            curriculum.set_global_level(int(level))
            return ds_cls(curriculum.generate_configuration({**options, "seed": seed, "size": size}))
        return ds_cls(cfg_cls(**options, seed=seed, size=size))
    except TaskInputError:
        raise
    except (TypeError, ValueError, AssertionError, IndexError) as e:
        raise TaskInputError(f"task.options: {name} refuses {options or level}: {type(e).__name__}: {e}") from None


def _problems(cfg: TaskConfig, dataset) -> list[Problem]:
    out = []
    for entry in dataset:
        meta = entry.get("metadata") or {}
        cot = meta.get("answer_cot")
        gold = gsm8k_answer(cot) if isinstance(cot, str) else None
        difficulty = meta.get("difficulty")
        pid = hashlib.sha1(entry["question"].encode()).hexdigest()[:12]
        out.append(Problem(id=f"{cfg.dataset}-{pid}", question=entry["question"], answer=str(entry["answer"]),
                           solution=gold[1] if gold else None, kind=cfg.dataset,
                           difficulty=int(difficulty) if isinstance(difficulty, (int, float)) else 0))
    return out


def check_countdown(problem: Problem, text: str, cfg) -> Verdict:
    """Countdown: the answer expression must use the given numbers exactly once each and reach the target."""
    numbers, target = countdown_spec(problem)
    span, how = extract_answer(text, cfg.extractors)
    if span is None:
        return Verdict(UNPARSEABLE, 0.0, 'no final answer found: end with a line "Answer: <expression>"')
    expr = span.split("=")[0].strip()[:MAX_EXPR]  # "3 + 4 = 7": the left side
    try:
        value, used = evaluate_expression(ast.parse(expr.replace("×", "*").replace("÷", "/"), mode="eval").body)
    except ZeroDivisionError:
        return Verdict(INCORRECT, 0.0, f"{expr} divides by zero", span, how)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
        reason = e.args[0] if isinstance(e, ValueError) and e.args else "not an arithmetic expression"
        return Verdict(UNPARSEABLE, 0.0, f"could not read {expr!r}: {reason}", span, how)
    have, given = Counter(used), Counter(numbers)
    if have != given:
        extra, missing = have - given, given - have
        parts = ([f"uses {', '.join(map(str, sorted(extra.elements())))} which {'is' if len(extra) == 1 else 'are'} "
                  f"not among the numbers (or more often than given)"] if extra else []) + \
                ([f"does not use {', '.join(map(str, sorted(missing.elements())))}"] if missing else [])
        return Verdict(INCORRECT, 0.0, f"{expr}: {'; '.join(parts)} — use each of {sorted(numbers)} exactly once",
                       span, how)
    if abs(value - target) > Fraction(1, 100000):
        return Verdict(INCORRECT, 0.0, f"{expr} = {_show(value)}, not the target {_show(target)}", span, how)
    return Verdict(CORRECT, 1.0, f"correct: {expr} = {_show(target)}", span, how)


def _show(x: Fraction) -> str:
    return str(x.numerator) if x.denominator == 1 else f"{float(x):.4g}"


def countdown_spec(problem: Problem) -> tuple[list[int], Fraction]:
    """(numbers, target) of a Countdown problem, from its gold expression (the generator's, which uses every given
    number once; the question's wording varies between the generator's templates)."""
    value, used = evaluate_expression(ast.parse(problem.answer, mode="eval").body)
    return used, value


def _check_generic(problem: Problem, text: str, cfg, entries: dict) -> Verdict:
    """A generator without a known answer type: its own score_answer on the extracted answer span."""
    span, how = extract_answer(text, cfg.extractors)
    if span is None:
        return Verdict(UNPARSEABLE, 0.0, 'no final answer found: end with a line "Answer: <answer>"')
    dataset, entry = entries[problem.question]
    try:
        score = float(dataset.score_answer(span, entry))
    except Exception as e:  # the library's scorer failed on this text
        return Verdict(UNPARSEABLE, 0.0, f"the answer {span!r} could not be scored ({type(e).__name__})", span, how)
    if score >= 1.0:
        return Verdict(CORRECT, 1.0, f"correct: {span}", span, how)
    return Verdict(INCORRECT, max(0.0, score), f"wrong answer: got {span}, expected {problem.answer}", span, how,
                   model_feedback=f"the answer {span} is wrong")


def load(cfg: TaskConfig) -> LoadedTask:
    test_ds = _dataset(cfg, cfg.num_test, cfg.seed)
    train_ds = _dataset(cfg, cfg.num_train + cfg.num_test, cfg.seed + 1_000_003)  # its own stream
    test = _problems(cfg, test_ds)
    held = {p.question for p in test}
    train = [p for p in _problems(cfg, train_ds) if p.question not in held][: cfg.num_train]
    if cfg.dataset == "countdown":
        checker = check_countdown
    elif all(_plain(p.answer) is not None for p in test + train):
        checker = check_answer
    else:  # the library's scorer reads the generator's entry
        entries = {e["question"]: (ds, e) for ds in (train_ds, test_ds) for e in ds}
        checker = partial(_check_generic, entries=entries)
    return LoadedTask(name=cfg.name, train=train, test=test, checker=checker)
