"""The four reasoning behaviors of Gandhi et al. 2025 (arXiv 2503.01307) in every chain of thought: verification,
backtracking, subgoal setting and backward chaining — counted per completion, summarised per iteration split by
correct vs incorrect samples.

Why our own detectors: the paper counts behaviors with an LLM classifier (a 135M model cannot be that classifier),
and the published rule-based proxies cover reflection/backtracking keywords only. On Countdown a chain is
arithmetic, so most behaviors are structural (METHODS.md, "Cognitive behaviors"); we parse every "a op b = c" and:

* verification — a computed value compared with the target ("12 is not 24", "4 * 6 = 24, which is the target");
* backtracking — an equation that starts again from the given numbers right after a path of two or more steps whose
  result is then abandoned (never used again and not the target); a list of one-step products is not a path;
* backward chaining — before the target is produced, an equation that takes it apart: the target as its left
  operand with given numbers on the right ("24 / 4 = 6"), or the target written as an expression that does not
  contain it ("24 = 4 * 6"; "12 = 12 * 2" is not);
* subgoal — an intermediate value named ("I need 6", "subgoal: 6") and produced by a later equation.

Lexical cues (below) cover general chains of thought (arithmetic word problems, code) and the words a model uses on
Countdown ("let me try another order", "work backwards"). Every behavior counts at most once per sentence, as the
published keyword proxies do. Precision and recall on the hand-labelled chains in tests/fixtures/behaviors.jsonl
are printed by tests/test_behaviors.py and stated in the README.

An LLM classifier (`behaviors.classifier`: current / initial / a path / py:module:function) is an optional second
opinion: one prompt per behavior asking for a count inside <count></count> (a parse failure counts 0, as in the
paper), reported beside the rule-based counts with their agreement.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable, Iterable

BEHAVIORS = ("verification", "backtracking", "subgoal", "backward")

_NUM = r"\d+(?:\.\d+)?"
_OPND = rf"(?:\(\s*)?{_NUM}(?:\s*\))?"  # no optional space at both ends: no exponential backtracking
_EXPR = rf"{_OPND}(?:\s*[-+*/×x÷]\s*{_OPND})+"
_FORWARD = re.compile(rf"(?<![\d.])({_EXPR})\s*=\s*({_NUM})(?!\.?\d)")  # "4 * 6 = 24", "(1 + 2) * 8 = 24"
_REVERSED = re.compile(rf"(?<![\d.*/+\-×x÷(])\s*({_NUM})\s*=\s*({_EXPR})(?!\s*=)")  # "24 = 4 * 6"
_SENTENCES = re.compile(r"(?<=[.!?;:])\s+(?=[A-Z(\d])|\n+")

_CUES = {
    "verification": re.compile(
        r"\b(let me|let's|i'll|i will|we can|now) (double-)?(check|verify|confirm)|\bdouble-check|\bcheck(ing)?:|"
        r"\bverif(y|ied|ying|ication)\b|\bto (check|confirm)\b|\b(this|that|which|it) (is|looks) (correct|right)\b|"
        r"\bplug(ging)? (it|this|that|\w+) back|\bsubstitut(e|ing) (it |this |that )?back|\bsanity check", re.I),
    "backtracking": re.compile(
        r"\b(let me|let's|i'll|i will|we can|i should|i need to) (try|start) (again|over|a different|another|something|"
        r"it differently|a new)|\btry (again|another|a different|something else)|\bstart (over|again)|\bgo back\b|"
        r"\bbacktrack|\bdead end|\banother (approach|way|order|combination|option)|\bdifferent (approach|order|"
        r"combination|way)|\bscratch that|\bthat (doesn't|does not|didn't|did not|won't|will not) work\b.*\b(try|instead)|"
        r"^\s*wait\b|\binstead,", re.I),
    "subgoal": re.compile(
        r"\bsub-?goals?\b|\bintermediate (goal|target|value|step)|\bbreak (this|it|the problem) (down|into)|"
        r"\bfirst,? (i|we) (need|have|must|should|want) to (find|compute|calculate|get|work out|make|figure)|"
        r"\bsplit (this|it|the problem) into", re.I),
    "backward": re.compile(
        r"\bwork(ing|ed)? backwards?\b|\bbackwards? from\b|\bstart(ing)? from the (target|goal|answer|end)\b|"
        r"\bfrom the (target|goal) back\b|\breverse (the|this) (problem|steps)", re.I),
}
_COMPARE = re.compile(r"\bnot\b|n't\b|\bequals?\b|\bmatch(es)?\b|\bsame as\b|\btoo (big|small|high|low|large)\b|"
                      r"\b(more|less|bigger|smaller|higher|lower|greater) than\b|\bshort of\b|\boff by\b|"
                      r"\baway from\b|\bexactly\b|\bis the target\b|[≠]|!=|==", re.I)
_NAMED = re.compile(rf"\b(?:sub-?goal|intermediate (?:goal|target|value)|need(?:s|ed)?|make|get|reach|aim for|"
                    rf"goal)\b[^.\d;]{{0,25}}?({_NUM})(?!\.?\d)", re.I)
_TARGET_WORD = re.compile(r"\b(target|goal)\b", re.I)


@dataclass(frozen=True)
class Step:
    operands: tuple[Fraction, ...]  # left to right
    result: Fraction
    sentence: int
    pos: int = 0  # where in the sentence
    reversed: bool = False  # written "result = expression"


def _numbers(text: str) -> list[Fraction]:
    return [Fraction(x) for x in re.findall(rf"(?<![\d.]){_NUM}", text)]


def sentences(text: str) -> list[str]:
    return [s for s in _SENTENCES.split(text) if s and s.strip()]


def parse_steps(parts: list[str]) -> list[Step]:
    """Every "a op b (op c ...) = r" and "r = a op b ..." in the sentences, in reading order."""
    steps = []
    for i, sent in enumerate(parts):
        found = [(m.start(), Step(tuple(_numbers(m.group(1))), Fraction(m.group(2)), i, m.start()))
                 for m in _FORWARD.finditer(sent)]
        taken = [(m.start(), m.end()) for m in _FORWARD.finditer(sent)]
        for m in _REVERSED.finditer(sent):
            if not any(a <= m.start(1) < b for a, b in taken):
                found.append((m.start(), Step(tuple(_numbers(m.group(2))), Fraction(m.group(1)), i, m.start(), True)))
        steps += [st for _, st in sorted(found, key=lambda x: x[0])]
    return steps


def _structural(parts: list[str], steps: list[Step], numbers: list[int], target: Fraction) -> dict[str, set[int]]:
    """Sentence indices showing each behavior by the structure of a Countdown chain (see the module docstring)."""
    hits: dict[str, set[int]] = {b: set() for b in BEHAVIORS}
    given = Counter(Fraction(n) for n in numbers)
    forward = [st for st in steps if not st.reversed]
    produced: set[Fraction] = set()  # results of the forward steps so far
    for st in steps:  # before the target is produced: the target taken apart into given numbers and what is needed
        if target not in produced and target not in given:
            if st.reversed and st.result == target and target not in st.operands:
                hits["backward"].add(st.sentence)
            elif not st.reversed and st.operands[0] == target and st.result != target and \
                    not Counter(st.operands[1:]) - given:
                hits["backward"].add(st.sentence)
        if not st.reversed:
            produced.add(st.result)
    for k, st in enumerate(forward[1:], 1):  # a restart from the given numbers after an abandoned path
        prev = forward[k - 1]
        from_given = not (Counter(st.operands) - given)
        earlier = {p.result for p in forward[:k - 1]} - set(given)
        path = any(o in earlier for o in prev.operands)  # prev builds on an earlier step: a path of 2+ steps
        abandoned = prev.result != target and all(prev.result not in later.operands for later in forward[k:])
        if from_given and path and abandoned and prev.result not in given:
            hits["backtracking"].add(st.sentence)
    results_by_sentence: dict[int, set[Fraction]] = {}
    for st in forward:
        results_by_sentence.setdefault(st.sentence, set()).add(st.result)
    computed: set[Fraction] = set()
    for i, sent in enumerate(parts):
        here = results_by_sentence.get(i, set())
        mentioned = set(_numbers(sent))
        values = (here | computed) & mentioned
        word = bool(_TARGET_WORD.search(sent))
        if values and (target in mentioned or word) and _COMPARE.search(sent) and \
                (values - {target} or target in here or word):
            hits["verification"].add(i)
        computed |= here
        for m in _NAMED.finditer(sent):
            v = Fraction(m.group(1))
            if v != target and any(st.result == v and (st.sentence, st.pos) > (i, m.start()) for st in forward):
                hits["subgoal"].add(i)
    return hits


def count_behaviors(text: str, numbers: list[int] | None = None, target: Fraction | int | None = None) -> dict[str, int]:
    """Sentences showing each behavior in one chain of thought: structural (Countdown: given numbers and target)
    and lexical cues, each sentence counted at most once per behavior."""
    parts = sentences(text)
    hits = {b: {i for i, s in enumerate(parts) if _CUES[b].search(s)} for b in BEHAVIORS}
    if numbers is not None and target is not None:
        for b, found in _structural(parts, parse_steps(parts), numbers, Fraction(target)).items():
            hits[b] |= found
    return {b: _events(hits[b]) for b in BEHAVIORS}


def _events(found: set[int]) -> int:
    """Runs of adjacent sentences count once: "12 is not 24. That fails, so let me start again: 4 * 6 = 24" is one
    backtrack whether its cue is the words, the restarted equation or both."""
    return sum(1 for i in found if i - 1 not in found)


# --------------------------------------------------------------------------- the stage


@dataclass
class BehaviorsConfig:
    classifier: str = ""  # "" (rules only) | current | initial | a model path | py:module:function
    classifier_max_new_tokens: int = 48
    max_chars: int = 2000  # of a chain shown to the classifier

    def __post_init__(self) -> None:
        if self.classifier_max_new_tokens < 1:
            raise ValueError("behaviors.classifier_max_new_tokens must be >= 1")


CLASSIFIER_PROMPTS = {
    "verification": "checks an intermediate result against the goal or the question, e.g. \"12 + 9 = 21, which is "
                    "not 24\" or \"let me check: 3 * 8 = 24, correct\"",
    "backtracking": "notices that an approach fails and explicitly tries another, e.g. \"that does not work, let me "
                    "try a different order\"",
    "subgoal": "names an intermediate target to reach first, e.g. \"first I need to make 6 from 2 and 3, then "
               "multiply by 4\"",
    "backward": "works from the goal back to the inputs, e.g. \"24 / 4 = 6, so I need 6 from the other numbers\"",
}


def classifier_prompt(behavior: str, text: str, max_chars: int) -> str:
    return (f"Here is a solution someone wrote:\n\n{text[:max_chars]}\n\nCount how many times the solution "
            f"{CLASSIFIER_PROMPTS[behavior]}. Give the count as a number inside <count></count>, e.g. "
            f"<count>2</count>.")


def parse_count(text: str) -> int:
    """The count in <count>N</count>; a parse failure counts 0 (as in the paper)."""
    m = re.search(r"<count>\s*(\d{1,4})\s*</count>", text or "")
    return int(m.group(1)) if m else 0


def analysed_text(record: dict) -> str:
    """The model's own chain: SEELE's continuation (the hint is the reference solution's), else the completion."""
    return record["continuation"] if isinstance(record.get("continuation"), str) else str(record.get("completion", ""))


def analyse(judged: list[dict], spec: Callable[[str], tuple[list[int], Fraction] | None],
            classify: Callable[[list[dict]], list[str]] | None = None, cfg: BehaviorsConfig | None = None
            ) -> tuple[list[dict], dict]:
    """Per judged sample: the behavior counts (and the classifier's, when one runs); per iteration: the share of
    samples showing each behavior and the mean count, over all samples and split by correct / incorrect."""
    cfg = cfg or BehaviorsConfig()
    records = []
    for r in judged:
        numbers_target = spec(r["prompt_id"])
        counts = count_behaviors(analysed_text(r), *(numbers_target or (None, None)))
        rec = {"prompt_id": r["prompt_id"], "sample_idx": int(r["sample_idx"]),
               "correct": r.get("status") == "correct" if "status" in r else None,
               "structural": numbers_target is not None, **counts}
        records.append(rec)
    if classify is not None:
        asks = [{"prompt_id": f"{i}:{b}", "messages": [{"role": "user", "content": classifier_prompt(
            b, analysed_text(r), cfg.max_chars)}]} for i, r in enumerate(judged) for b in BEHAVIORS]
        for ask, answer in zip(asks, classify(asks)):
            i, b = ask["prompt_id"].split(":")
            records[int(i)][f"llm_{b}"] = parse_count(answer)
    return records, summarise(records)


def summarise(records: list[dict]) -> dict:
    stats: dict = {"analysed": len(records), "structural": sum(bool(r["structural"]) for r in records)}
    splits = {"": records}
    if records and records[0]["correct"] is not None:
        splits.update({"_correct": [r for r in records if r["correct"]],
                       "_incorrect": [r for r in records if not r["correct"]]})
    for b in BEHAVIORS:
        for suffix, rs in splits.items():
            stats[f"{b}_share{suffix}"] = _share(r[b] > 0 for r in rs)
            stats[f"{b}_mean{suffix}"] = sum(r[b] for r in rs) / len(rs) if rs else None
        if records and f"llm_{b}" in records[0]:
            stats[f"llm_{b}_share"] = _share(r[f"llm_{b}"] > 0 for r in records)
            stats[f"llm_{b}_agreement"] = _share((r[b] > 0) == (r[f"llm_{b}"] > 0) for r in records)
    for suffix, rs in splits.items():
        stats[f"any_share{suffix}"] = _share(any(r[b] > 0 for b in BEHAVIORS) for r in rs)
    return stats


def _share(flags: Iterable[bool]) -> float | None:
    flags = list(flags)
    return sum(flags) / len(flags) if flags else None
