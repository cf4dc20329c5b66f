"""Evaluate: held-out accuracy of one model (IRPO step 6), computed the same way for every iteration,
iteration 0 (the starting model) included.

Greedy decoding, one completion per held-out question, checked by the verify stage's extractors
(``accuracy``: the answer must be given in the asked-for form). ``accuracy_lenient`` also accepts the last
number of the completion, to tell format learning apart from getting the arithmetic right.
``maj_k > 0`` adds majority voting over ``maj_k`` sampled completions (``maj@k``; ties broken by the
first answer to reach the top count) — the paper's maj@32.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from stages.generate import GenerateConfig, generate
from stages.modeling import load_model, load_tokenizer
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

    def __post_init__(self) -> None:
        if self.maj_k < 0 or self.maj_k == 1:
            raise ValueError(f"eval.maj_k must be 0 (off) or >= 2, got {self.maj_k}")
        if self.max_new_tokens < 1 or self.batch_size < 1:
            raise ValueError("eval.max_new_tokens and eval.batch_size must be >= 1")


def _vote_key(span: str) -> str:
    v = _plain(span)
    return repr(v) if v is not None else span.strip().lower()


def evaluate(model_path: str, prompts: list[dict], gold: dict[str, str], cfg: EvalConfig, verify_cfg: VerifyConfig,
             desc: str = "evaluate") -> tuple[list[dict], dict]:
    """prompts: records with prompt_id and messages; gold: prompt_id -> gold answer.
    Returns (one record per question, metrics)."""
    tok = load_tokenizer(model_path)
    model = load_model(model_path, cfg.dtype, cfg.device)
    greedy = GenerateConfig(num_samples=1, temperature=0.0, max_new_tokens=cfg.max_new_tokens,
                            batch_size=cfg.batch_size, seed=cfg.seed, dtype=cfg.dtype, device=cfg.device)
    gens, gen_stats = generate(model_path, prompts, greedy, desc=desc, model=model, tokenizer=tok)
    lenient = VerifyConfig(extractors=list(dict.fromkeys(verify_cfg.extractors + ["last_number"])),
                           timeout_s=verify_cfg.timeout_s)
    records = []
    for g in gens:
        span, how, status = check(g["completion"], gold[g["prompt_id"]], verify_cfg)
        _, _, lenient_status = check(g["completion"], gold[g["prompt_id"]], lenient)
        records.append({"prompt_id": g["prompt_id"], "completion": g["completion"], "gold": gold[g["prompt_id"]],
                        "extracted": span, "extractor": how, "status": status, "correct": status == CORRECT,
                        "correct_lenient": lenient_status == CORRECT, "num_tokens": g["num_tokens"]})
    n = max(len(records), 1)
    metrics = {
        "accuracy": sum(r["correct"] for r in records) / n,
        "accuracy_lenient": sum(r["correct_lenient"] for r in records) / n,
        "unparseable_rate": sum(r["status"] == UNPARSEABLE for r in records) / n,
        "mean_tokens": sum(r["num_tokens"] for r in records) / n,
        "questions": len(records),
        "tokens_per_s": gen_stats["tokens_per_s"],
    }
    if cfg.maj_k:
        sampled = GenerateConfig(num_samples=cfg.maj_k, temperature=cfg.maj_temperature, top_p=cfg.maj_top_p,
                                 max_new_tokens=cfg.max_new_tokens, batch_size=max(1, cfg.batch_size // cfg.maj_k),
                                 seed=cfg.seed, dtype=cfg.dtype, device=cfg.device)
        samples, _ = generate(model_path, prompts, sampled, desc=f"{desc} maj@{cfg.maj_k}", model=model, tokenizer=tok)
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
