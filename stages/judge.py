"""Judge: LLM-as-a-Judge (Self-Rewarding, Yuan et al. 2024, §2.3). A model scores each response with an
additive 5-point rubric prompt (the `template`, kept in conf/judge/*.yaml so a run's saved config records
exactly what was asked; `{instruction}` and `{response}` are replaced), ending in a line "Score: <points>".

Each response is judged ``num_judgments`` (J) times by sampling and its score is the mean of the judgments
whose score could be parsed. A judgment without a parseable score in [min_score, max_score] is dropped
and counted — never read as a low score — and a response with no valid judgment gets no score at all
(``reward: None``), so it can form no pair. Every judgment's text is kept in the judgments dataset.

With thoughts (TPO), the judge sees only the ``response`` part of each output, never the thought; an output
whose split failed (``parsed: false``) is not judged (status ``unparsed``).

Score parsing (`parse_score`): the last "Score: X" in the text wins (a judgment may restate a partial
score before its final line); "Score: 4", "**Score:** 4", "Total score = 4", "Score: 4/5", "Score: 3.5" are
read; a fraction over anything but max_score ("4/10"), a number outside the range, or a score in words
is unparseable.

    from stages.judge import JudgeConfig, judge
    recs, stats = judge("path/to/model", prompts, generations, JudgeConfig(template="... {instruction} {response}"))
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field

from stages.generate import Engine, GenerateConfig, generate
from stages.thoughts import judged_text

SCORED, UNSCORED, UNPARSED = "scored", "unscored", "unparsed"
_SCORE = re.compile(r"(?i)score\s*(?:\*\*)?\s*[:=]\s*(?:\*\*)?\s*\[?\s*(-?\d+(?:\.\d+)?)(?:\s*/\s*(\d+(?:\.\d+)?))?")


@dataclass
class JudgeConfig:
    template: str  # the judge prompt: {instruction} and {response} are replaced
    kind: str = "llm"
    model: str = "current"  # current: the model being improved (M(t)) | initial: M0 | a path | py:module:function
    system_prompt: str = ""
    num_judgments: int = 3  # J samples per response, averaged (paper: 3)
    temperature: float = 0.7  # sampling temperature of the judgments
    top_p: float = 0.9
    max_new_tokens: int = 192  # room for a short justification and the score line
    batch_size: int = 8  # responses per forward pass (x num_judgments sequences)
    min_score: float = 0.0
    max_score: float = 5.0  # additive 5-point rubric: 0..5
    collapse_threshold: float = 0.6  # warn when more than this share of valid scores is the maximum
    seed: int = 0
    engine: Engine = field(default_factory=Engine)  # the run's engine (set by the pipeline)

    def __post_init__(self) -> None:
        missing = [k for k in ("{instruction}", "{response}") if k not in self.template]
        if missing:
            raise ValueError(f"judge.template must contain {missing}")
        if self.kind != "llm":
            raise ValueError(f"judge.kind must be 'llm' here, got {self.kind!r}")
        if self.num_judgments < 1:
            raise ValueError(f"judge.num_judgments must be >= 1, got {self.num_judgments}")
        if self.temperature == 0 and self.num_judgments != 1:
            raise ValueError("judge.temperature=0 gives identical judgments: set judge.num_judgments=1")
        if not self.min_score < self.max_score:
            raise ValueError("judge.min_score must be < judge.max_score")
        if not 0 < self.collapse_threshold <= 1:
            raise ValueError("judge.collapse_threshold must be in (0, 1]")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ValueError(f"judge.temperature must be >= 0 and judge.top_p in (0, 1], got {self.temperature}, "
                             f"{self.top_p}")
        if self.max_new_tokens < 1 or self.batch_size < 1:
            raise ValueError("judge.max_new_tokens and judge.batch_size must be >= 1")

    def generation(self) -> GenerateConfig:
        return self.engine.sampling(num_samples=self.num_judgments, temperature=self.temperature, top_p=self.top_p,
                                    max_new_tokens=self.max_new_tokens, batch_size=self.batch_size, seed=self.seed)


def parse_score(text: str, min_score: float = 0.0, max_score: float = 5.0) -> float | None:
    """The score of one judgment, or None when it has no valid score line."""
    matches = list(_SCORE.finditer(text or ""))
    if not matches:
        return None
    value, denominator = matches[-1].group(1), matches[-1].group(2)
    v = float(value)
    if denominator is not None and float(denominator) != max_score:
        return None
    if not (min_score <= v <= max_score) or not math.isfinite(v):
        return None
    return v


def fill(template: str, instruction: str, response: str) -> str:
    """The judge prompt (plain replacement: braces inside responses are left alone)."""
    return template.replace("{instruction}", instruction).replace("{response}", response)


def instruction_of(messages: list[dict]) -> str:
    return next(m["content"] for m in reversed(messages) if m["role"] == "user")


def judge_messages(cfg: JudgeConfig, instruction: str, response: str) -> list[dict]:
    """The chat the judge is asked (the meta-judge's judge pairs use the same prompt as their input)."""
    sys_msg = [{"role": "system", "content": cfg.system_prompt}] if cfg.system_prompt else []
    return sys_msg + [{"role": "user", "content": fill(cfg.template, instruction, response)}]


def aggregate(scores: list[float | None]) -> float | None:
    """Mean of the valid scores; None when there is none."""
    valid = [s for s in scores if s is not None]
    return sum(valid) / len(valid) if valid else None


def score_stats(scores: list[float], cfg: JudgeConfig, prefix: str = "") -> dict:
    """Histogram of valid judgment scores (rounded to points) and how concentrated they are at the top."""
    hist = Counter(int(round(s)) for s in scores)
    lo, hi = int(cfg.min_score), int(cfg.max_score)
    top = hist.get(hi, 0) / len(scores) if scores else 0.0
    out = {f"{prefix}hist_{k}": hist.get(k, 0) for k in range(lo, hi + 1)}
    out.update({f"{prefix}score_mean": sum(scores) / len(scores) if scores else None, f"{prefix}top_share": top,
                f"{prefix}collapsed": bool(scores) and top > cfg.collapse_threshold})
    return out


def judge(model_path: str, prompts: list[dict], candidates: list[dict], cfg: JudgeConfig,
          desc: str = "judge") -> tuple[list[dict], dict]:
    """prompts: records with prompt_id and messages (the instruction is the last user message).
    candidates: records with prompt_id, sample_idx and completion (the generations).
    Returns one record per candidate (its fields plus judgments, judgment_scores, reward = mean valid
    score or None, status scored | unscored) and stats."""
    instruction = {p["prompt_id"]: instruction_of(p["messages"]) for p in prompts}
    requests = [{"prompt_id": f"{c['prompt_id']}#{c['sample_idx']}", "messages": judge_messages(
        cfg, instruction[c["prompt_id"]], judged_text(c))} for c in candidates if c.get("parsed", True)]
    outs, gen_stats = generate(model_path, requests, cfg.generation(), desc=desc)
    texts: dict[str, list[str]] = {}
    for o in outs:
        texts.setdefault(o["prompt_id"], []).append(o["completion"])
    records, all_scores = [], []
    for c in candidates:
        judged = texts.get(f"{c['prompt_id']}#{c['sample_idx']}", [])
        scores = [parse_score(j, cfg.min_score, cfg.max_score) for j in judged]
        all_scores += [s for s in scores if s is not None]
        reward = aggregate(scores)
        records.append({**c, "judgments": judged, "judgment_scores": scores, "reward": reward,
                        "num_valid": sum(s is not None for s in scores),
                        "status": UNPARSED if not c.get("parsed", True) else SCORED if reward is not None else UNSCORED})
    n_judgments = sum(len(r["judgments"]) for r in records)
    stats = {"responses": len(records), "judgments": n_judgments, "valid": len(all_scores),
             "dropped_unparseable": n_judgments - len(all_scores),
             "unscored_responses": sum(r["status"] == UNSCORED for r in records),
             "unparsed_responses": sum(r["status"] == UNPARSED for r in records),
             "tokens_per_s": gen_stats["tokens_per_s"], "judge_fingerprint": gen_stats["model_fingerprint"],
             **score_stats(all_scores, cfg)}
    return records, stats
