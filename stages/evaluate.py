"""Evaluate: held-out accuracy of one model (IRPO step 6), computed the same way for every iteration,
iteration 0 (the starting model) included.

Greedy decoding, one completion per held-out question, checked by the verify stage's extractors
(``accuracy``: the answer must be given in the asked-for form). ``accuracy_lenient`` also accepts the last
number of the completion, to tell format learning apart from getting the arithmetic right.
``maj_k > 0`` adds majority voting over ``maj_k`` sampled completions (``maj@k``; ties broken by the
first answer to reach the top count) — the paper's maj@32.

Open-ended tasks (the built-in ``constraints`` task: gold = a list of rule-checked constraints):
``accuracy`` is the share of responses meeting every constraint (prompt level) and
``instruction_accuracy`` the share of constraints met. Two model-judged measures can be added:

* ``win_rate: true`` — M(t) against M0 on the same held-out prompts (M0's greedy responses from iteration
  0), each pair judged in both orders by ``win_rate_judge`` with the ``pairwise_template``
  (stages/compare.py); wins, ties, losses and the judge's position bias are reported.
* ``judge_quality: true`` — the LLM judge (the judge config, with M(t) as the judge being improved) scores
  each held-out response; ``judge_agreement`` is the probability that, of two responses meeting a different
  share of their constraints, the judge scores the better one higher (ties count half; 0.5 = chance), and
  the score histogram shows collapse toward the maximum.

With thoughts (TPO, ``thought_cfg``), the held-out prompts are asked with the thought prompt and every
measure is computed on the response part; an output whose split fails counts whole as its response (what
a user would see), and the parse-failure rate and thought / response lengths are reported.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass

from stages.generate import GenerateConfig, generate
from stages.modeling import load_model, load_tokenizer
from stages.thoughts import ThoughtConfig, split_records, wrap
from stages.verify import CORRECT, UNPARSEABLE, VerifyConfig, _plain, answers_match, check


@dataclass
class EvalConfig:
    max_new_tokens: int = 256
    batch_size: int = 32  # prompts per forward pass
    maj_k: int = 0  # samples for majority voting; 0 = off (paper: 32)
    maj_temperature: float = 0.8
    maj_top_p: float = 0.95
    seed: int = 0
    dtype: str = "auto"
    device: str = "auto"
    # open-ended tasks: model-judged measures
    win_rate: bool = False  # M(t) vs M0 on held-out prompts, both orders
    win_rate_judge: str = "initial"  # initial (M0) | current (M(t)) | a path | py:module:function
    pairwise_template: str = ""  # {instruction}, {response_a}, {response_b}; ends in "Winner: A/B/tie"
    pairwise_max_new_tokens: int = 128
    judge_quality: bool = False  # score held-out responses with the LLM judge, compare with the rule checks

    def __post_init__(self) -> None:
        if self.win_rate:
            from stages.compare import CompareConfig

            CompareConfig(template=self.pairwise_template)  # refuses a template without its placeholders
        if self.maj_k < 0 or self.maj_k == 1:
            raise ValueError(f"eval.maj_k must be 0 (off) or >= 2, got {self.maj_k}")
        if self.max_new_tokens < 1 or self.batch_size < 1:
            raise ValueError("eval.max_new_tokens and eval.batch_size must be >= 1")


def _vote_key(span: str) -> str:
    v = _plain(span)
    return repr(v) if v is not None else span.strip().lower()


def evaluate(model_path: str, prompts: list[dict], gold: dict[str, str | list[dict]], cfg: EvalConfig,
             verify_cfg: VerifyConfig, desc: str = "evaluate", baseline: list[dict] | None = None,
             judge_cfg=None, judge_model: str | None = None, win_judge_model: str | None = None,
             thought_cfg=None) -> tuple[list[dict], dict]:
    """prompts: records with prompt_id and messages; gold: prompt_id -> gold answer or constraint list.
    baseline: M0's evaluation records (for the win rate; None at iteration 0). judge_cfg/judge_model: the
    LLM judge whose quality is measured (None: not measured). Returns (one record per question, metrics)."""
    tok = load_tokenizer(model_path)
    model = load_model(model_path, cfg.dtype, cfg.device)
    greedy = GenerateConfig(num_samples=1, temperature=0.0, max_new_tokens=cfg.max_new_tokens,
                            batch_size=cfg.batch_size, seed=cfg.seed, dtype=cfg.dtype, device=cfg.device)
    thought_cfg = thought_cfg or ThoughtConfig()
    gens, gen_stats = generate(model_path, wrap(prompts, thought_cfg), greedy, desc=desc, model=model, tokenizer=tok)
    gens, thought_stats = split_records(gens, thought_cfg)
    lenient = VerifyConfig(extractors=list(dict.fromkeys(verify_cfg.extractors + ["last_number"])),
                           timeout_s=verify_cfg.timeout_s)
    records = []
    for g in gens:
        response = g["response"] if g["parsed"] else g["completion"]  # an unparsed output counts whole
        span, how, status = check(response, gold[g["prompt_id"]], verify_cfg)
        _, _, lenient_status = check(response, gold[g["prompt_id"]], lenient)
        target = gold[g["prompt_id"]]
        records.append({"prompt_id": g["prompt_id"], "completion": response,
                        "gold": json.dumps(target) if isinstance(target, list) else target,
                        "extracted": span, "extractor": how, "status": status, "correct": status == CORRECT,
                        "correct_lenient": lenient_status == CORRECT, "num_tokens": g["num_tokens"]})
        if thought_cfg.enabled:  # completion = the response; the whole output and its thought kept beside it
            records[-1].update({"output": g["completion"], "thought": g["thought"], "parsed": g["parsed"]})
        if isinstance(target, list):
            met, total = map(int, span.split("/"))
            records[-1]["constraints_met"] = met / total if total else 1.0
    n = max(len(records), 1)
    metrics = {
        "accuracy": sum(r["correct"] for r in records) / n,
        "accuracy_lenient": sum(r["correct_lenient"] for r in records) / n,
        "unparseable_rate": sum(r["status"] == UNPARSEABLE for r in records) / n,
        "mean_tokens": sum(r["num_tokens"] for r in records) / n,
        "questions": len(records),
        "tokens_per_s": gen_stats["tokens_per_s"],
    }
    if thought_cfg.enabled:
        metrics.update(thought_stats)
    metrics["response_chars"] = sum(len(r["completion"]) for r in records) / n  # what was checked and judged
    if any("constraints_met" in r for r in records):
        metrics["instruction_accuracy"] = sum(r.get("constraints_met", 0.0) for r in records) / n
    if cfg.win_rate and baseline is not None:
        metrics.update(_win_rate(records, prompts, baseline, cfg, win_judge_model or model_path, desc))
    if cfg.judge_quality and judge_cfg is not None:
        metrics.update(_judge_quality(records, prompts, judge_cfg, judge_model or model_path, desc))
    if cfg.maj_k:
        sampled = GenerateConfig(num_samples=cfg.maj_k, temperature=cfg.maj_temperature, top_p=cfg.maj_top_p,
                                 max_new_tokens=cfg.max_new_tokens, batch_size=max(1, cfg.batch_size // cfg.maj_k),
                                 seed=cfg.seed, dtype=cfg.dtype, device=cfg.device)
        samples, _ = generate(model_path, wrap(prompts, thought_cfg), sampled, desc=f"{desc} maj@{cfg.maj_k}",
                              model=model, tokenizer=tok)
        samples = [{**s, "completion": s["response"] if s["parsed"] else s["completion"]}
                   for s in split_records(samples, thought_cfg)[0]]
        votes: dict[str, Counter] = {}
        first: dict[str, dict[str, str]] = {}
        for s in samples:
            span, _, status = check(s["completion"], gold[s["prompt_id"]], verify_cfg)
            if span is not None and status != UNPARSEABLE:
                key = _vote_key(span)
                votes.setdefault(s["prompt_id"], Counter())[key] += 1
                first.setdefault(s["prompt_id"], {}).setdefault(key, span)
        by_id = {r["prompt_id"]: r for r in records}
        for pid, r in by_id.items():
            c = votes.get(pid)
            if c:
                top = max(c.values())
                key = next(k for k in first[pid] if c[k] == top)  # first answer to reach the top count
                r["maj_answer"] = first[pid][key]
                r["maj_correct"] = answers_match(gold[pid], first[pid][key], verify_cfg.timeout_s) is True
            else:
                r["maj_answer"], r["maj_correct"] = None, False
        metrics[f"maj@{cfg.maj_k}"] = sum(r["maj_correct"] for r in records) / n
    del model
    return records, metrics


def _win_rate(records: list[dict], prompts: list[dict], baseline: list[dict], cfg: EvalConfig, judge_model: str,
              desc: str) -> dict:
    from stages.compare import CompareConfig, compare
    from stages.judge import instruction_of

    base = {b["prompt_id"]: b["completion"] for b in baseline}
    instr = {p["prompt_id"]: instruction_of(p["messages"]) for p in prompts}
    mine = [r for r in records if r["prompt_id"] in base]
    ccfg = CompareConfig(template=cfg.pairwise_template, max_new_tokens=cfg.pairwise_max_new_tokens,
                         batch_size=max(1, cfg.batch_size // 2), seed=cfg.seed, dtype=cfg.dtype, device=cfg.device)
    outcomes, stats = compare(judge_model, [(instr[r["prompt_id"]], r["completion"], base[r["prompt_id"]])
                                            for r in mine], ccfg, desc=f"{desc} vs M0")
    for r, o in zip(mine, outcomes):
        r.update({"win_score": o["score"], "winner_xy": o["winner_xy"], "winner_yx": o["winner_yx"],
                  "verdict_xy": o["verdict_xy"], "verdict_yx": o["verdict_yx"]})
    return {f"vs_m0_{k}": v for k, v in stats.items()}


def judge_agreement(scores: list[float | None], truth: list[float]) -> float | None:
    """P(judge scores the response meeting more constraints higher), over all pairs of scored responses
    whose rule-check outcomes differ; ties in score count half. None when no such pair exists."""
    pts = [(s, t) for s, t in zip(scores, truth) if s is not None]
    num = den = 0.0
    for i in range(len(pts)):
        for j in range(i + 1, len(pts)):
            (si, ti), (sj, tj) = pts[i], pts[j]
            if ti == tj:
                continue
            den += 1
            better, worse = (si, sj) if ti > tj else (sj, si)
            num += 1.0 if better > worse else 0.5 if better == worse else 0.0
    return num / den if den else None


def _judge_quality(records: list[dict], prompts: list[dict], judge_cfg, judge_model: str, desc: str) -> dict:
    from stages.judge import judge, score_stats

    cands = [{"prompt_id": r["prompt_id"], "sample_idx": 0, "completion": r["completion"]} for r in records]
    judged, stats = judge(judge_model, prompts, cands, judge_cfg, desc=f"{desc} judge")
    for r, j in zip(records, judged):
        r.update({"judge_score": j["reward"], "judgments": j["judgments"], "judgment_scores": j["judgment_scores"]})
    valid = [s for j in judged for s in j["judgment_scores"] if s is not None]
    out = {"judge_agreement": None, "judge_scored_share": sum(j["reward"] is not None for j in judged) / max(len(judged), 1),
           "judge_dropped_unparseable": stats["dropped_unparseable"],
           **score_stats(valid, judge_cfg, prefix="judge_")}
    if all("constraints_met" in r for r in records):
        out["judge_agreement"] = judge_agreement([r["judge_score"] for r in records],
                                                 [r["constraints_met"] for r in records])
    return out
