"""Refine: the improvement cycle with tool feedback — generate, verify with a tool, feed the verdicts back, revise.

Per prompt, the first attempts are the iteration's samples (round 0, already checked by the judge stage). Then for
rounds r = 1..``rounds``: the ``keep`` best attempts so far (by the checker's graded score; a wrong answer before an
unparseable one; later rounds first) each go back to the model as a follow-up turn —

    [the problem] -> assistant: [the attempt] -> user: ``template`` with {feedback} (what the tool said) and
    {prompt} (the problem's original message)

— and the model writes ``revisions`` samples per thread, which the task's checker verifies. A prompt stops once an
attempt passes, once its best score has not improved for ``patience`` rounds, or at the round limit. The tool is
the task's own checker (stages/tasks/): a failing test, error or time-out for code (stages/sandbox.py); the
verdict on a final answer, plus the calculator that recomputes every "a op b = c" step and names the first wrong
one (stages/verify.py: check_steps); the Countdown checker's reason. The model is never shown the gold answer
(`Verdict.shown`).

Every attempt of every round is one record (prompt_id, round, attempt, parent_round, parent_attempt, followup,
feedback_shown, feedback_kind, status, score...), so a thread reads back from the table (``python -m
pipeline.inspect RUN --refine 3``).

Training data (`refine_pairs`, selected by ``pairs``): **first-attempt** pairs are IRPO's pairs (stages/pairs.py)
with the correct revisions added to the winners, re-posed as answers to the bare problem (the losers stay the
failed first attempts); **retry** pairs have the thread as their prompt (problem, failed attempt, feedback), a
correct revision as chosen and a wrong revision — or the failed attempt copied unchanged — as rejected, at most
``pairs_per_prompt`` per thread and, with both kinds, at most ``retry_ratio`` times as many as first-attempt
pairs (a seeded choice, spread over prompts) so single-attempt accuracy is still what most pairs teach
(METHODS.md: RISE, SCoRe, PLUM, self-debugging). The same loop, greedy and one thread per prompt, is the
evaluation's ``refine`` measure: held-out accuracy after round r for r = 0..R (stages/evaluate.py).

Deviation: each thread shows one attempt and its feedback (not all k attempts in one turn): the retry pair's
prompt is then exactly one failed attempt and its feedback, and a small model's context stays short.
"""

from __future__ import annotations

import math
import random
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from stages.verify import CORRECT, UNPARSEABLE

PAIR_KINDS = ("first_attempt", "retry")
REVISION_BASE = 1000  # sample_idx of a revision among the first-attempt candidates: round * 1000 + attempt
DEFAULT_TEMPLATE = ("A checker tested your answer: {feedback}\n"
                    "Think about what went wrong, then solve the problem again from the start.\n\n{prompt}")


@dataclass
class RefineConfig:
    rounds: int = 0  # R: follow-up rounds after the first attempts (0: no refine stage)
    keep: int = 2  # k: best attempts per prompt returned with their feedback each round
    revisions: int = 2  # samples per returned attempt
    patience: int = 1  # stop a prompt once its best score has not improved for this many rounds
    template: str = DEFAULT_TEMPLATE  # the follow-up user turn: {feedback}, {prompt}
    pairs: list[str] = field(default_factory=lambda: list(PAIR_KINDS))  # first_attempt, retry: which pairs to build
    retry_ratio: float | None = 1.0  # retry pairs <= this x first-attempt pairs (with both kinds; null: no cap)
    max_new_tokens: int | None = None  # per revision (None: generate.max_new_tokens)

    def __post_init__(self) -> None:
        if not isinstance(self.rounds, int) or self.rounds < 0:
            raise ValueError(f"refine.rounds must be an integer >= 0, got {self.rounds!r}")
        if self.keep < 1 or self.revisions < 1 or self.patience < 1:
            raise ValueError("refine.keep, refine.revisions and refine.patience must be >= 1")
        check_template(self.template, "refine.template")
        bad = [k for k in self.pairs if k not in PAIR_KINDS]
        if bad or (self.rounds and not self.pairs):
            raise ValueError(f"refine.pairs: choose from {list(PAIR_KINDS)}, got {self.pairs}")
        if self.retry_ratio is not None and self.retry_ratio < 0:
            raise ValueError(f"refine.retry_ratio must be >= 0 or null, got {self.retry_ratio}")
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise ValueError(f"refine.max_new_tokens must be >= 1 or null, got {self.max_new_tokens}")


def check_template(template: str, key: str) -> None:
    if "{feedback}" not in template:
        raise ValueError(f"{key} must contain the placeholder {{feedback}} (and may contain {{prompt}})")
    try:
        template.format(feedback="", prompt="")
    except (KeyError, IndexError, ValueError) as e:
        raise ValueError(f"{key}: only {{feedback}} and {{prompt}} may be placeholders (double other braces): "
                         f"{e!r}") from None


def feedback_kind(status: str, feedback: str) -> str:
    """What the tool found, in a word: correct | no_answer (no final answer, no code block) | wrong_step (the
    calculator found one) | wrong_answer | test_failed | error | timeout (code)."""
    if status == CORRECT:
        return "correct"
    if "timed out" in feedback:
        return "timeout"
    if feedback.startswith("failed:"):
        return "test_failed"
    if "Error" in feedback.split(":")[0]:
        return "error"
    if "the step" in feedback:
        return "wrong_step"
    return "no_answer" if status == UNPARSEABLE else "wrong_answer"


def followup(messages: list[dict], attempt: str, text: str) -> list[dict]:
    """The thread that asks for a revision: the problem's messages, the attempt, and the follow-up turn `text`
    (`template.format(feedback=..., prompt=...)`)."""
    return messages + [{"role": "assistant", "content": attempt}, {"role": "user", "content": text}]


def _rank(a: dict) -> tuple:
    """Best first: graded score, then a wrong answer before an unparseable one, then later rounds."""
    return (-a["score"], a["status"] == UNPARSEABLE, -a["round"], a["attempt"])


def _attempt(rec: dict, rnd: int, idx: int, parent: dict | None, follow: str, verdict) -> dict:
    return {"prompt_id": rec["prompt_id"], "round": rnd, "attempt": idx,
            "parent_round": parent["round"] if parent else -1, "parent_attempt": parent["attempt"] if parent else -1,
            "followup": follow, "completion": rec["completion"], "num_tokens": int(rec.get("num_tokens", 0)),
            "status": verdict.status, "score": float(verdict.score), "reward": verdict.reward,
            "feedback": verdict.feedback, "feedback_shown": verdict.shown,
            "feedback_kind": feedback_kind(verdict.status, verdict.shown)}


def run_rounds(model_path: str, prompts: list[dict], first: list[dict], task, check, sampling, *, rounds: int,
               keep: int, patience: int, template: str, desc: str, model=None, tokenizer=None
               ) -> tuple[list[dict], dict]:
    """The loop (used by the refine stage and the evaluation's refine measure). first: round-0 attempts with
    prompt_id, completion and their Verdict under "verdict". sampling: GenerateConfig of a revision call
    (num_samples = revisions per thread). Returns (every attempt of every round, stats)."""
    from stages.generate import generate

    messages = {p["prompt_id"]: p["messages"] for p in prompts}
    by_prompt: dict[str, list[dict]] = defaultdict(list)
    for k, rec in enumerate(first):
        by_prompt[rec["prompt_id"]].append(_attempt(rec, 0, int(rec.get("sample_idx", k)), None, "", rec["verdict"]))
    best = {pid: max(a["score"] for a in atts) for pid, atts in by_prompt.items()}
    stall = dict.fromkeys(by_prompt, 0)
    solved = {pid: 0 for pid, atts in by_prompt.items() if any(a["status"] == CORRECT for a in atts)}
    stats: dict = {"prompts": len(by_prompt)}
    for r in range(1, rounds + 1):
        t0 = time.time()
        active = [pid for pid in by_prompt if pid not in solved and stall[pid] < patience]
        threads, parents = [], []
        for pid in active:
            seen: set[str] = set()
            for a in sorted(by_prompt[pid], key=_rank):
                if len(seen) == keep:
                    break
                if a["completion"].strip() in seen:
                    continue
                seen.add(a["completion"].strip())
                text = template.format(feedback=a["feedback_shown"], prompt=messages[pid][-1]["content"])
                threads.append({"prompt_id": f"{len(threads)}", "messages": followup(messages[pid], a["completion"], text)})
                parents.append((a, text))
        stats[f"round_{r}_prompts"] = len(active)
        if not threads:
            stats[f"round_{r}_seconds"] = 0.0
            stats[f"solved_by_round_{r}"] = len(solved) / max(len(by_prompt), 1)
            continue
        gens, _ = generate(model_path, threads, sampling, desc=f"{desc} round {r}/{rounds}", model=model,
                           tokenizer=tokenizer)
        verdicts = task.check_all([(task.problem(parents[int(g["prompt_id"])][0]["prompt_id"]), g["completion"])
                                   for g in gens], check)
        count = Counter()
        for g, v in zip(gens, verdicts):
            parent, text = parents[int(g["prompt_id"])]
            pid = parent["prompt_id"]
            by_prompt[pid].append(_attempt({**g, "prompt_id": pid}, r, count[pid], parent, text, v))
            count[pid] += 1
        for pid in active:
            top = max(a["score"] for a in by_prompt[pid])
            stall[pid] = 0 if top > best[pid] else stall[pid] + 1
            best[pid] = max(best[pid], top)
            if any(a["status"] == CORRECT for a in by_prompt[pid] if a["round"] == r):
                solved[pid] = r
        stats[f"round_{r}_attempts"] = len(gens)
        stats[f"round_{r}_tokens"] = sum(int(g.get("num_tokens", 0)) for g in gens)
        stats[f"round_{r}_seconds"] = round(time.time() - t0, 2)
        stats[f"solved_by_round_{r}"] = len(solved) / max(len(by_prompt), 1)
    stats["solved_by_round_0"] = sum(v == 0 for v in solved.values()) / max(len(by_prompt), 1)
    stats["solved_by_refine"] = sum(v > 0 for v in solved.values())
    stats["stopped_stalled"] = sum(pid not in solved and stall[pid] >= patience for pid in by_prompt)
    stats["attempts"] = sum(len(a) for a in by_prompt.values())
    records = [a for pid in by_prompt for a in by_prompt[pid]]
    return records, stats


def refine(model_path: str, prompts: list[dict], judged: list[dict], cfg: RefineConfig, generate_cfg, check,
           desc: str = "refine") -> tuple[list[dict], dict]:
    """The refine stage: `judged` (the judge stage's records: round 0) refined for cfg.rounds rounds with the
    sampling settings of `generate_cfg` (cfg.revisions samples per thread). check: the task's VerifyConfig."""
    from dataclasses import replace

    from stages.tasks import load_task
    from stages.verify import Verdict

    task = load_task(check.task)
    first = [{**j, "verdict": Verdict.of(j)} for j in judged]
    sampling = replace(generate_cfg, num_samples=cfg.revisions, seed=generate_cfg.seed + 7919,
                       max_new_tokens=cfg.max_new_tokens or generate_cfg.max_new_tokens,
                       batch_size=max(1, generate_cfg.batch_size * generate_cfg.num_samples // cfg.revisions))
    model = tokenizer = None
    if generate_cfg.backend == "hf" and not str(model_path).startswith("py:"):  # loaded once for every round
        from stages.modeling import load_model, load_tokenizer

        tokenizer, model = load_tokenizer(model_path), load_model(model_path, generate_cfg.dtype, generate_cfg.device)
    return run_rounds(model_path, prompts, first, task, check, sampling, rounds=cfg.rounds, keep=cfg.keep,
                      patience=cfg.patience, template=cfg.template, desc=desc, model=model, tokenizer=tokenizer)


# --------------------------------------------------------------------------- training pairs


def refine_pairs(prompts: list[dict], judged: list[dict], attempts: list[dict], pairs_cfg, cfg: RefineConfig
                 ) -> tuple[list[dict], dict]:
    """First-attempt and/or retry pairs (cfg.pairs) from the round-0 judgments and the refine stage's attempts.
    Every record has pair_type (first_attempt | retry), round (of its chosen side; -1: the gold solution) and
    feedback_kind (what the tool said about the failed attempt the chosen side revised; "none" for a first attempt)."""
    from stages.pairs import GOLD, _cap, _distinct, _irpo_pairs, build_pairs

    by_key = {(a["prompt_id"], a["round"], a["attempt"]): a for a in attempts}
    first: list[dict] = []
    stats: dict = {}
    if "first_attempt" in cfg.pairs:
        revised = [{"prompt_id": a["prompt_id"], "sample_idx": REVISION_BASE * a["round"] + a["attempt"],
                    "completion": a["completion"], "reward": 1.0, "status": CORRECT}
                   for a in attempts if a["round"] > 0 and a["status"] == CORRECT]
        first, stats = build_pairs(prompts, judged + revised, pairs_cfg)
        for p in first:
            idx = p["chosen_sample_idx"]
            rnd = -1 if idx == GOLD else idx // REVISION_BASE
            parent = by_key.get((p["prompt_id"], rnd, idx % REVISION_BASE)) if rnd > 0 else None
            kind = by_key[(p["prompt_id"], parent["parent_round"], parent["parent_attempt"])]["feedback_kind"] \
                if parent else "none"
            p.update({"pair_type": "first_attempt", "round": rnd, "feedback_kind": kind})
        stats["refined_winners"] = sum(p["round"] > 0 for p in first)
    else:
        stats = {"prompts": len(prompts)}
    messages = {p["prompt_id"]: p["messages"] for p in prompts}
    retry: list[dict] = []
    skipped = Counter()
    if "retry" in cfg.pairs:
        threads: dict[tuple, list[dict]] = defaultdict(list)
        for a in attempts:
            if a["round"] > 0:
                threads[(a["prompt_id"], a["parent_round"], a["parent_attempt"])].append(a)
        for (pid, pr, pa), revs in sorted(threads.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2])):
            parent = by_key[(pid, pr, pa)]
            winners = _distinct([(a["attempt"], a["completion"], 1.0) for a in revs if a["status"] == CORRECT])
            losers = _distinct([(a["attempt"], a["completion"], 0.0) for a in revs if a["status"] != CORRECT]
                               + [(-1, parent["completion"], 0.0)])  # -1: the failed attempt, unchanged
            rng = random.Random(f"{pairs_cfg.seed}:{pid}:{pr}:{pa}")
            rng.shuffle(winners)
            rng.shuffle(losers)
            thread = {"prompt_id": pid, "messages": followup(messages[pid], parent["completion"], revs[0]["followup"])}
            for r in _irpo_pairs(thread, winners, losers, pairs_cfg, skipped):
                retry.append({**r, "pair_type": "retry", "round": revs[0]["round"],
                              "feedback_kind": parent["feedback_kind"], "parent_round": pr, "parent_attempt": pa})
    before = len(retry)
    if "first_attempt" in cfg.pairs and cfg.retry_ratio is not None:
        retry = _cap(retry, math.floor(cfg.retry_ratio * len(first)), pairs_cfg.seed) if first else []
    kinds = Counter(r["feedback_kind"] for r in retry)
    stats.update({"first_attempt_pairs": len(first), "retry_pairs": len(retry), "retry_capped": before - len(retry),
                  "retry_threads_no_correct_revision": skipped.get("skipped_no_winner", 0),
                  **{f"retry_feedback_{k}": n for k, n in sorted(kinds.items())}})
    records = first + retry
    stats["prompts_with_pairs"] = len({r["prompt_id"] for r in records})
    stats["pairs"] = len(records)
    return records, stats

