"""Scripted stand-ins for a model (`model=py:tests.fake_models:<name>`): deterministic, so a test knows exactly
which judgments parse, which responses score highest and which pairs must come out. Signature of every model:
fn(prompts, cfg) -> for each prompt, cfg.num_samples completion strings."""

from __future__ import annotations

import re


def _content(p: dict) -> str:
    return p["messages"][-1]["content"]


def score_of(response: str) -> int:
    return sum(map(ord, response)) % 6


def checksum_judge(prompts, cfg):
    """Scores a response by a checksum of its text (score_of); the first judgment of every third response is
    unparseable (dropped), and responses containing "UNJUDGEABLE" never get a valid judgment."""
    out = []
    for i, p in enumerate(prompts):
        response = _content(p).split("Response:")[-1].split("After examining")[0].strip()
        score = score_of(response)
        texts = []
        for k in range(cfg.num_samples):
            if "UNJUDGEABLE" in response or (i % 3 == 0 and k == 0):
                texts.append("I cannot decide on this one.")
            else:
                texts.append(f"The response has {len(response.split())} words.\nScore: {score}")
        out.append(texts)
    return out


WRITTEN = ["Describe a quiet morning at the harbour in {n} sentences.", "List {n} reasons people enjoy gardening.",
           "Explain how thunder forms, for a child aged {n}.", "Write a limerick about a cat named Number {n}.",
           "Give {n} tips for packing a suitcase efficiently.", "Summarize why bridges need regular inspections.",
           "Suggest {n} names for a friendly robot and justify one.", "Compare tea and coffee for breakfast drinkers.",
           "Outline a {n}-day plan to learn basic knitting.", "Tell a fable about an ant who forgot winter.",
           "Recommend {n} board games for a rainy afternoon.", "Argue briefly whether homework should be optional."]


def writer(prompts, cfg):
    """Writes one of a dozen distinct instructions per request, chosen by a hash of the request text."""
    out = []
    for p in prompts:
        h = sum(map(ord, _content(p)))
        out.append([f"Task 9: {WRITTEN[h % len(WRITTEN)].format(n=2 + h % 5)}" for _ in range(cfg.num_samples)])
    return out


def first_wins(prompts, cfg):
    """A pairwise judge with pure position bias: always prefers response A."""
    return [["A is better.\nWinner: A"] * cfg.num_samples for _ in prompts]


def _prefer_longer(prompts, cfg, what: str):
    """Verdicts for pairwise prompts showing "<what> A:" and "<what> B:": the longer one wins (equal: tie)."""
    out = []
    for p in prompts:
        text = _content(p)
        a = text.split(f"{what} A:")[1].split(f"{what} B:")[0]
        b = text.split(f"{what} B:")[1].split("Explain your decision")[0]
        w = "A" if len(a) > len(b) else "B" if len(b) > len(a) else "tie"
        out.append([f"Winner: {w}"] * cfg.num_samples)
    return out


def longer_wins(prompts, cfg):
    """A pairwise judge preferring the longer response."""
    return _prefer_longer(prompts, cfg, "Response")


def always_one(prompts, cfg):
    """A broken model: one completion per prompt whatever num_samples asks for."""
    return [["only one"] for _ in prompts]


def varied_judge(prompts, cfg):
    """A judge whose J judgments of one response disagree: judgment k is k+1 sentences long and gives
    (checksum + k) mod 6 points, so the meta-judge has judgments of different scores and lengths to rank."""
    out = []
    for p in prompts:
        response = _content(p).split("Response:")[-1].split("After examining")[0].strip()
        base = score_of(response)
        out.append([" ".join(["This part is checked."] * (k + 1)) + f"\nScore: {(base + k) % 6}"
                    for k in range(cfg.num_samples)])
    return out


def longer_judgment_wins(prompts, cfg):
    """A meta-judge preferring the longer judgment (a position-free, deterministic preference)."""
    return _prefer_longer(prompts, cfg, "Judgment")


def reviser(prompts, cfg):
    """Arithmetic with feedback (tests/test_refine.py), reading "What is A + B? <tag>": `easy` is answered right at
    once; `fixable` is first answered with a wrong step and fixed only when the follow-up names that step (sample 0;
    sample 1 copies the failed attempt unchanged); `stubborn` repeats its wrong attempt whatever it is told."""
    out = []
    for p in prompts:
        first = p["messages"][0]["content"]
        a, b = map(int, re.search(r"What is (\d+) \+ (\d+)", first).groups())
        tag = first.split("?")[1].split()[0]
        if len(p["messages"]) == 1:  # a first attempt
            right = f"Step 1: {a} + {b} = {a + b}\nAnswer: {a + b}"
            wrong = [f"Step 1: {a} + {b} = {a + b + 1 + k}\nAnswer: {a + b + 1 + k}" for k in range(cfg.num_samples)]
            out.append([right] * cfg.num_samples if tag == "easy" else wrong)
            continue
        parent, told = p["messages"][-2]["content"], p["messages"][-1]["content"]
        fixed = f"Step 1: {a} + {b} = {a + b}\nAnswer: {a + b}"
        texts = [fixed if tag == "fixable" and k == 0 and "the step" in told else parent for k in range(cfg.num_samples)]
        out.append(texts)
    return out


def omegaconf_bug(prompts, cfg):
    """A bug inside a job whose exception is one of OmegaConf's (as a config lookup gone wrong in the pipeline's
    code would be): it must be reported as a bug, with its trace, not as an error in the command line."""
    from omegaconf import OmegaConf

    return OmegaConf.create({"a": 1}).missing_key
