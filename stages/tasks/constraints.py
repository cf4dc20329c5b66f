"""Constraint following: instructions with rule-checkable constraints, and the code that checks them.

The built-in open-ended task (``task=constraints``): a writing task ("Describe the water cycle") plus one
to three constraints that code can check without any model's opinion — word limits, a word that must or
must not appear, an exact number of bullet points or paragraphs, all lowercase / all capitals, the whole
answer in double quotes, a title in <<double angle brackets>>, a fixed closing phrase, no commas
(in the spirit of IFEval, Zhou et al. 2023; written for this project). It serves three uses:

* the held-out evaluation of open-ended methods (Self-Rewarding, TPO, Meta-Rewarding): the share of
  responses that satisfy every constraint (prompt level) and the share of constraints satisfied
  (instruction level);
* the reference against which an LLM judge's scores are checked (judge agreement);
* a verifiable task in its own right: reward 1 when every constraint holds, so IRPO runs on it too.

A constraint is a small dict, e.g. ``{"type": "max_words", "n": 50}``; ``describe(c)`` is its sentence in
the prompt and ``satisfied(text, c)`` its check. Word and phrase checks ignore case.

    python -c "from stages.tasks.constraints import constraint_problems as c; print(c(2, seed=0, split='test'))"
"""

from __future__ import annotations

import json
import random
import re

from stages.tasks import LoadedTask, Problem, TaskConfig, generated
from stages.verify import CORRECT, INCORRECT, Verdict

# (task, a word the topic invites: forbidding it makes the constraint bite)
TOPICS = [
    ("Describe the water cycle", "water"), ("Explain why the sky looks blue", "blue"),
    ("Give advice to someone who wants to start running", "run"), ("Explain how a bicycle works", "wheel"),
    ("Describe your ideal weekend", "weekend"), ("Explain what a budget is and why it helps", "money"),
    ("Write a short note thanking a neighbour for their help", "thank"),
    ("Describe how to make a cup of tea", "tea"), ("Explain why sleep is important", "sleep"),
    ("Give tips for a job interview", "job"), ("Describe a busy city street", "city"),
    ("Explain how plants make their food", "sun"), ("Write a short story about a lost dog", "dog"),
    ("Explain what a computer program is", "computer"), ("Describe the taste of a lemon", "sour"),
    ("Give reasons to learn a second language", "language"), ("Explain how to plant a tree", "tree"),
    ("Describe a rainy day", "rain"), ("Explain why people recycle", "waste"),
    ("Write an invitation to a birthday party", "party"), ("Explain what the moon does to the tides", "moon"),
    ("Give advice for studying for an exam", "study"), ("Describe a library", "book"),
    ("Explain how to stay safe when swimming", "water"), ("Write a product description for a backpack", "bag"),
    ("Explain the rules of tic-tac-toe", "game"), ("Describe a winter morning", "cold"),
    ("Explain why exercise is good for you", "health"), ("Write a short poem about the ocean", "sea"),
    ("Explain how a letter travels through the post", "mail"), ("Describe a good friend", "friend"),
    ("Give tips for saving electricity at home", "energy"), ("Explain what a volcano is", "lava"),
    ("Describe the job of a firefighter", "fire"), ("Explain how to wash your hands properly", "soap"),
    ("Write a short review of a favourite meal", "food"), ("Explain why bees matter", "flower"),
    ("Describe a train journey", "train"), ("Give advice to a new pet owner", "pet"),
    ("Explain what an email is", "message"), ("Describe a market on a Saturday morning", "market"),
    ("Explain how to cross a road safely", "car"), ("Write a welcome message for a new classmate", "class"),
    ("Explain why we have seasons", "summer"), ("Describe a mountain hike", "mountain"),
    ("Give tips for keeping a room tidy", "clean"), ("Explain what a map is used for", "place"),
    ("Describe the sound of a thunderstorm", "thunder"),
]
INCLUDE_WORDS = ["simple", "because", "example", "today", "important", "together", "careful", "remember",
                 "happy", "first"]
END_PHRASES = ["Is there anything else I can help with?", "That is all.", "Thank you for reading."]
# constraints of one family never appear together (they would conflict or repeat)
FAMILIES = {"length": ("max_words", "min_words"), "case": ("lowercase", "uppercase"),
            "structure": ("bullets", "paragraphs"), "wrap": ("quotes", "title", "end_phrase"),
            "words": ("include_word", "exclude_word"), "punctuation": ("no_commas",)}
TYPES = tuple(t for f in FAMILIES.values() for t in f)
_WORD = re.compile(r"[A-Za-z0-9]+(?:['’-][A-Za-z0-9]+)*")


def words(text: str) -> int:
    return len(_WORD.findall(text))


def _bullets(text: str) -> int:
    return sum(bool(re.match(r"^\s*[-*•]\s+\S", line)) for line in text.splitlines())


def _paragraphs(text: str) -> int:
    return sum(bool(p.strip()) for p in re.split(r"\n\s*\n", text.strip()))


def _has_word(text: str, word: str) -> bool:
    return re.search(rf"(?i)\b{re.escape(word)}", text) is not None  # prefix match: run -> running, runs


def describe(c: dict) -> str:
    t = c["type"]
    return {
        "max_words": lambda: f"Answer in at most {c['n']} words.",
        "min_words": lambda: f"Answer in at least {c['n']} words.",
        "include_word": lambda: f"Include the word \"{c['word']}\".",
        "exclude_word": lambda: f"Do not use the word \"{c['word']}\".",
        "bullets": lambda: f"Use exactly {c['n']} bullet points, each on its own line starting with \"- \".",
        "paragraphs": lambda: f"Write exactly {c['n']} paragraphs separated by a blank line.",
        "lowercase": lambda: "Write your entire answer in lowercase letters, with no capital letters.",
        "uppercase": lambda: "Write your entire answer in capital letters.",
        "quotes": lambda: "Wrap your entire answer in double quotation marks.",
        "title": lambda: "Start with a title wrapped in double angle brackets, like <<my title>>.",
        "end_phrase": lambda: f"End your answer with the exact phrase \"{c['phrase']}\".",
        "no_commas": lambda: "Do not use any commas.",
    }[t]()


def satisfied(text: str, c: dict) -> bool:
    """Whether `text` meets constraint `c`."""
    t, s = c["type"], text.strip()
    letters = re.sub(r"[^A-Za-z]", "", s)
    return {
        "max_words": lambda: 0 < words(s) <= c["n"],
        "min_words": lambda: words(s) >= c["n"],
        "include_word": lambda: _has_word(s, c["word"]),
        "exclude_word": lambda: bool(s) and not _has_word(s, c["word"]),
        "bullets": lambda: _bullets(s) == c["n"],
        "paragraphs": lambda: _paragraphs(s) == c["n"],
        "lowercase": lambda: bool(letters) and s == s.lower(),
        "uppercase": lambda: bool(letters) and s == s.upper(),
        "quotes": lambda: len(s) > 2 and s[0] in "\"“" and s[-1] in "\"”",
        "title": lambda: re.match(r"^<<[^<>\n]+>>", s) is not None,
        "end_phrase": lambda: s.lower().endswith(c["phrase"].lower()),
        "no_commas": lambda: bool(s) and "," not in s,
    }[t]()


def check_all(text: str, constraints: list[dict]) -> list[bool]:
    return [satisfied(text, c) for c in constraints]


def _draw(rng: random.Random, t: str, keyword: str) -> dict:
    if t == "max_words":
        return {"type": t, "n": rng.choice([30, 50, 80])}
    if t == "min_words":
        return {"type": t, "n": rng.choice([30, 50, 80])}
    if t == "include_word":
        return {"type": t, "word": rng.choice(INCLUDE_WORDS)}
    if t == "exclude_word":
        return {"type": t, "word": keyword}
    if t == "bullets":
        return {"type": t, "n": rng.choice([2, 3, 4, 5])}
    if t == "paragraphs":
        return {"type": t, "n": rng.choice([2, 3])}
    if t == "end_phrase":
        return {"type": t, "phrase": rng.choice(END_PHRASES)}
    return {"type": t}


def _compatible(types: list[str]) -> bool:
    fams = [f for t in types for f, members in FAMILIES.items() if t in members]
    if len(set(fams)) < len(fams):
        return False
    # whole-answer quotes around bullet lines / paragraphs, or a title line inside quotes, read badly
    return not ("quotes" in types and ({"bullets", "paragraphs"} & set(types)))


def prompt_text(task: str, constraints: list[dict]) -> str:
    return " ".join([task + "."] + [describe(c) for c in constraints])


def constraint_problems(n: int, seed: int, split: str, difficulties: list[int] | None = None):
    """`n` distinct instructions of `split` (train/test drawn from separate random streams), each a topic
    plus `difficulty` constraints (1..3). The gold `answer` is the constraint list as JSON."""
    difficulties = difficulties or [1, 2, 3]
    rng = random.Random(f"constraints:{seed}:{split}")
    out, seen, i = [], set(), 0
    while len(out) < n:
        d = difficulties[i % len(difficulties)]
        i += 1
        task, keyword = rng.choice(TOPICS)
        types = rng.sample(TYPES, d)
        if not _compatible(types):
            continue
        cs = [_draw(rng, t, keyword) for t in sorted(types, key=TYPES.index)]
        q = prompt_text(task, cs)
        if q in seen:
            if i > 100 * n + 1000:
                raise ValueError(f"could not draw {n} distinct constraint instructions; ask for fewer")
            continue
        seen.add(q)
        out.append(Problem(id=f"ifc-{split}-{len(out):05d}", question=q, answer=json.dumps(cs),
                           kind="+".join(c["type"] for c in cs), difficulty=d))
    return out


def check(problem: Problem, text: str, cfg=None) -> Verdict:
    """The task's checker: correct when every constraint holds; score = the share of constraints met; the
    feedback names each constraint that failed."""
    constraints = json.loads(problem.answer)
    ok = check_all(text, constraints)
    failed = [describe(c) for c, good in zip(constraints, ok) if not good]
    feedback = ("all constraints met" if not failed else
                f"{len(failed)} of {len(ok)} constraints not met: " + " ".join(failed))
    return Verdict(CORRECT if all(ok) else INCORRECT, sum(ok) / len(ok) if ok else 1.0, feedback,
                   f"{sum(ok)}/{len(ok)}", "constraints")


def load(cfg: TaskConfig) -> LoadedTask:
    return generated(constraint_problems, cfg, check, kind="rules")  # no final answer: no lenient accuracy, no maj
