"""Verify: the verifiable checker (IRPO step 2), as a judge. `verify` scores every sample with its task's own
checker (`LoadedTask.check`, stages/tasks/): reward 1 when correct, else 0, plus the checker's graded score and
feedback text. It has the judges' interface (stages/judge.py, stages/compare.py), so the pipeline's judging
step is one call whatever the judge.

`check_answer` is the final-answer checker of the arithmetic and file tasks: pull the final answer out of a
completion and compare it with the gold answer.

Extraction tries the configured extractors in order and the first that finds an answer span wins:

* ``answer_line`` — the last "Answer: X" (also "Final answer: X", "**Answer:** X"), the format the
  built-in prompt asks for;
* ``boxed`` — the last ``\\boxed{X}`` (balanced braces);
* ``answer_is`` — the last "the answer is X";
* ``last_number`` — the last number in the text (lenient; off by default so the reward measures the
  asked-for format too; the evaluation reports a lenient accuracy with it on, beside the strict one).

The span is then parsed with math-verify and compared with the parsed gold answer for mathematical
equivalence (1/2 == 0.5 == \\frac{1}{2}, 1,234 == 1234). Plain numbers take a fast exact path first.
A completion with no span, or a span math-verify cannot parse, is ``unparseable`` (reward 0, kept apart
from ``incorrect`` in the statistics). math-verify uses SIGALRM timeouts: call this from the main thread
or from a worker process, never from a thread.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache

from stages.tasks import TaskConfig
from stages.thoughts import judged_text

EXTRACTORS = ("answer_line", "boxed", "answer_is", "last_number")
CORRECT, INCORRECT, UNPARSEABLE = "correct", "incorrect", "unparseable"
MAX_SPAN = 200  # characters of an answer span handed to the parser


@dataclass
class VerifyConfig:
    extractors: list[str] = field(default_factory=lambda: ["answer_line", "boxed", "answer_is"])
    timeout_s: int = 3  # math-verify timeout per parse/compare (seconds)
    task: TaskConfig | None = None  # the task whose checker decides (set by the pipeline from the `task` group)

    def __post_init__(self) -> None:
        unknown = [e for e in self.extractors if e not in EXTRACTORS]
        if unknown or not self.extractors:
            raise ValueError(f"judge.extractors: unknown {unknown or 'empty list'}; choose from {list(EXTRACTORS)}")
        if not isinstance(self.timeout_s, int) or self.timeout_s < 1:
            raise ValueError(f"judge.timeout_s must be an integer >= 1 (seconds), got {self.timeout_s!r}")

    def lenient(self) -> "VerifyConfig":
        """The same checker that also accepts the last number of a text (the evaluation's lenient accuracy)."""
        return VerifyConfig(list(dict.fromkeys(self.extractors + ["last_number"])), self.timeout_s, self.task)


@dataclass
class Verdict:
    """A task checker's decision on one answer."""

    status: str  # correct | incorrect | unparseable
    score: float  # graded score in [0, 1]: 1/0 for a final answer, the share of constraints met, tests passed...
    feedback: str  # a short text a model could act on: expected vs got, which constraint failed
    extracted: str | None = None  # the answer span found (None: nothing found)
    extractor: str | None = None  # which extractor found it
    model_feedback: str | None = None  # what a model may be shown when `feedback` gives away the gold answer

    @classmethod
    def of(cls, record: dict) -> "Verdict":
        """The verdict stored in a judged or evaluated record (its status, score, feedback... columns)."""
        return cls(record["status"], float(record["score"]), record["feedback"], record.get("extracted"),
                   record.get("extractor"), record.get("feedback_shown"))

    @property
    def shown(self) -> str:
        """The feedback a model is shown in a refine round (stages/refine.py): never the gold answer."""
        return self.feedback if self.model_feedback is None else self.model_feedback

    @property
    def reward(self) -> float:
        """IRPO's reward: 1.0 correct, 0.0 otherwise."""
        return 1.0 if self.status == CORRECT else 0.0


# one whitespace run before the colon: two adjacent \s* backtracked quadratically on "answer" + long whitespace
_ANSWER_LINE = re.compile(r"(?i)(?:final\s+)?answer\s*(?:\*\*\s*)?[:：]\s*(?:\*\*)?\s*")
_ANSWER_IS = re.compile(r"(?i)\banswer\s+is\s*:?\s*")
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
_PLAIN_NUMBER = re.compile(r"^-?\d+(?:\.\d+)?$")


def _clean(span: str) -> str:
    span = _ANSWER_LINE.split(span)[-1]  # "Answer: Answer: 11" -> "11"
    span = span.strip().strip("*").strip()
    span = re.sub(r"^\$+|\$+$", "", span).strip()  # $...$ math or a leading currency sign
    return span.rstrip(".;,!").strip()[:MAX_SPAN]


def _last_boxed(text: str) -> str | None:
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    i, depth = start + len("\\boxed{"), 1
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i:j]
    return None  # unbalanced


def _last_after(prefix: re.Pattern, text: str) -> str | None:
    """The text after the last match of `prefix` that is followed by something, up to the end of its line or the
    next match. Matching only the prefix lets a later "the answer is" on the same line win (a [^\n]* group
    swallowed it); stopping at the next match keeps this linear in len(text)."""
    ms = list(prefix.finditer(text))
    for k in range(len(ms) - 1, -1, -1):
        start = ms[k].end()
        stop = ms[k + 1].start() if k + 1 < len(ms) else len(text)
        nl = text.find("\n", start, stop)
        rest = text[start: nl if nl >= 0 else stop]
        if _clean(rest):
            return rest
    return None


def extract_answer(text: str, extractors: list[str] | tuple[str, ...] = ("answer_line", "boxed", "answer_is")
                   ) -> tuple[str | None, str | None]:
    """(answer span, extractor name) of the first extractor that finds one, else (None, None)."""
    for name in extractors:
        span: str | None = None
        if name == "answer_line":
            span = _last_after(_ANSWER_LINE, text)
        elif name == "boxed":
            span = _last_boxed(text)
        elif name == "answer_is":
            span = _last_after(_ANSWER_IS, text)
        elif name == "last_number":
            nums = _NUMBER.findall(text)
            span = nums[-1] if nums else None
        if span is not None and _clean(span):
            return _clean(span), name
    return None, None


def _plain(s: str) -> float | None:
    s = s.replace(",", "").replace(" ", "")
    return float(s) if _PLAIN_NUMBER.match(s) else None


@lru_cache(maxsize=4096)
def _parse(s: str, timeout_s: int):
    from math_verify import parse

    try:
        out = parse(s, parsing_timeout=timeout_s)
        if not out and "\\" in s:  # bare LaTeX (\sqrt{2}, \dfrac{3}{4}): math-verify reads it only inside $...$
            out = parse(f"${s}$", parsing_timeout=timeout_s)
        return tuple(out)
    except Exception:
        return ()


def answers_match(gold: str, pred: str, timeout_s: int = 3) -> bool | None:
    """True/False when `pred` can be compared with `gold`; None when `pred` cannot be parsed."""
    g, p = _plain(gold), _plain(pred)
    if g is not None and p is not None:
        return abs(g - p) <= 1e-9 * max(1.0, abs(g))
    parsed_gold = _parse(gold, timeout_s)
    if not parsed_gold:  # gold not math ("A", "yes"): compare as normalised text, before the pred parse
        return pred.strip().lower() == gold.strip().lower()
    parsed_pred = _parse(pred, timeout_s)
    if not parsed_pred:
        return None
    from math_verify import verify as mv_verify

    try:
        return bool(mv_verify(list(parsed_gold), list(parsed_pred), timeout_seconds=timeout_s))
    except Exception:
        return False


def check_answer(problem, text: str, cfg: VerifyConfig) -> Verdict:
    """The final-answer checker: the answer span found by `cfg.extractors`, compared with `problem.answer`. A
    wrong or missing answer's feedback also names the first wrong calculation step (`check_steps`)."""
    span, how = extract_answer(text, cfg.extractors)
    step = check_steps(text)
    with_step = (lambda msg: f"{msg}; {step}") if step else (lambda msg: msg)
    if span is None:
        return Verdict(UNPARSEABLE, 0.0, with_step('no final answer found: end with a line "Answer: <answer>"'))
    match = answers_match(problem.answer, span, cfg.timeout_s)
    if match is None:
        return Verdict(UNPARSEABLE, 0.0, with_step(f"the final answer {span!r} could not be read as a number or "
                                                   "expression"), span, how)
    if match:
        return Verdict(CORRECT, 1.0, f"correct: {span}", span, how)
    return Verdict(INCORRECT, 0.0, with_step(f"wrong final answer: got {span}, expected {problem.answer}"), span, how,
                   model_feedback=with_step(f"the final answer {span} is wrong"))


# --------------------------------------------------------------------------- the calculator tool

_OPS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
        ast.Div: lambda a, b: a / b}
_NUM = r"\d+(?:,\d{3})*(?:\.\d+)?"
# "12 + 7 = 19", "3 x 4 x 2 = 24", "(12 - 4) / 2 = 4", "$1,200 - $300 = $900": numbers joined by operators, then "= number"
_STEP = re.compile(rf"(?<![\w.,])(\(?\s*\$?{_NUM}\s*\)?(?:\s*[-+*/x×÷]\s*\(?\s*\$?{_NUM}\s*\)?)+)\s*=\s*\$?(-?{_NUM})"
                   rf"(?![\w]|\.\d)")


def evaluate_expression(node: ast.AST, decimals: bool = False) -> tuple[Fraction, list[int]]:
    """(exact value, the integer literals used) of + - * / (and a leading minus) over integer literals (and decimal
    ones with `decimals`); anything else is ValueError. Nothing is evaluated but these nodes, with exact fractions — the project's own walk rather
    than eval or sympy, which would run or parse arbitrary model text."""
    if isinstance(node, ast.Constant) and (type(node.value) is int or decimals and type(node.value) is float):
        return Fraction(str(node.value)), [node.value] if type(node.value) is int else []
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):  # "-61 + 94 * 4": Countdown's gold writes these
        value, used = evaluate_expression(node.operand, decimals)
        return -value, used
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        (a, used_a), (b, used_b) = evaluate_expression(node.left, decimals), evaluate_expression(node.right, decimals)
        return _OPS[type(node.op)](a, b), used_a + used_b
    what = type(node.op).__name__ if isinstance(node, (ast.BinOp, ast.UnaryOp)) else type(node).__name__
    shown = {"UAdd": "a plus sign on a number", "Pow": "**", "FloorDiv": "//", "Mod": "%", "Constant": "a non-integer",
             "Name": "a name", "Call": "a function call"}.get(what, what)
    raise ValueError(f"only the given numbers, + - * / and parentheses are allowed, found {shown}")


def _number(text: str) -> Fraction:
    return Fraction(text.replace(",", "").replace("$", ""))


def check_steps(text: str) -> str | None:
    """The calculator tool of the refine cycle: recompute every "a op b = c" step written in `text` (left to right,
    exactly, operator precedence and parentheses respected) and name the first wrong one, e.g.
    ``the step "7 + 6 = 12" is wrong: 7 + 6 = 13``; None when every step found is right (or there is none)."""
    for m in _STEP.finditer(text[:20_000]):
        expr, claimed = m.group(1).strip(), m.group(2)
        try:
            value, _ = evaluate_expression(ast.parse(re.sub(r"[x×]", "*", expr.replace("÷", "/"))
                                                     .replace(",", "").replace("$", ""), mode="eval").body, decimals=True)
        except (SyntaxError, ValueError, ZeroDivisionError, RecursionError):
            continue
        if abs(value - _number(claimed)) > Fraction(1, 10**6):
            right = str(value.numerator) if value.denominator == 1 else f"{float(value):.6g}"
            return f'the step "{expr} = {claimed}" is wrong: {expr} = {right}'
    return None


def verify(model_path: str | None, prompts: list[dict], candidates: list[dict], cfg: VerifyConfig,
           desc: str = "verify") -> tuple[list[dict], dict]:
    """The judges' interface for the verifiable checker (no model: `model_path` is unused). candidates: records
    with prompt_id, sample_idx and completion (with thoughts, the response part is checked). Returns each
    candidate with the verdict's extracted, extractor, status, reward, score and feedback, and the counts."""
    from stages.tasks import load_task

    if cfg.task is None:
        raise ValueError("verify: VerifyConfig.task is not set: the checker belongs to a task")
    task = load_task(cfg.task)
    records = []
    verdicts = task.check_all([(task.problem(c["prompt_id"]), judged_text(c)) for c in candidates], cfg)
    for c, v in zip(candidates, verdicts):
        records.append({**c, "sample_idx": int(c["sample_idx"]), "extracted": v.extracted, "extractor": v.extractor, "status": v.status,
                        "reward": v.reward, "score": v.score, "feedback": v.feedback,
                        "feedback_shown": v.shown})
    return records, {k: sum(r["status"] == k for r in records) for k in (CORRECT, INCORRECT, UNPARSEABLE)}
