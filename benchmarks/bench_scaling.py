"""How generation and DPO time grow with the number of prompts, samples per prompt, sequence length and pairs.

    python benchmarks/bench_scaling.py                      # embedded SmolLM2-135M
    python benchmarks/bench_scaling.py --model tiny

The generate stage (batch 16, the default dtype) and the train stage (conf/train/dpo.yaml settings, 1 epoch)
on the default job's arithmetic prompts and pairs (see bench_train.py); one factor varied at a time from
16 prompts x 4 samples x 64 new tokens and 16 pairs. Model loading is not timed (DPO: building the DPOTrainer, which
precomputes the reference log-probs, plus Trainer.train()).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import common  # noqa: F401
from bench_train import pairs
from common import MODELS, arithmetic_prompts, header, model_path, table, time_dpo


TIMED: dict[str, float] = {}


def gen_time(path, model, tok, n_prompts, samples, tokens) -> tuple[float, int]:
    from stages.generate import GenerateConfig, generate

    cfg = GenerateConfig(num_samples=samples, max_new_tokens=tokens, batch_size=16, device="cpu")
    t0 = time.perf_counter()
    recs, _ = generate(path, arithmetic_prompts(n_prompts), cfg, desc="scaling", model=model, tokenizer=tok)
    return time.perf_counter() - t0, sum(r["num_tokens"] for r in recs)


def train_time(path, n_pairs, repeat) -> float:
    from stages.train import TrainConfig, train

    recs = pairs(n_pairs)
    for r in recs:  # longer sequences: the solution written `repeat` times
        for side in ("chosen", "rejected"):
            r[side] = [{"role": "assistant", "content": "\n".join([r[side][0]["content"]] * repeat)}]
    args = {"beta": 0.1, "learning_rate": 2e-5, "num_train_epochs": 1, "per_device_train_batch_size": 2,
            "gradient_accumulation_steps": 4, "max_length": 1024, "gradient_checkpointing": False,
            "precompute_ref_log_probs": True}
    before = TIMED.get("train", 0.0)
    with tempfile.TemporaryDirectory() as d:
        train(path, recs, Path(d) / "m", TrainConfig(args=args))
    return TIMED["train"] - before


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=MODELS, default="embedded")
    a = ap.parse_args()
    from stages.modeling import load_model, load_tokenizer

    time_dpo(TIMED, "train")
    header("scaling of generation and DPO time", f"python benchmarks/bench_scaling.py --model {a.model}",
           "one factor at a time from 16 prompts x 4 samples x 64 tokens (generation) and 16 pairs (DPO)")
    path = model_path(a.model)
    model, tok = load_model(path, "auto", "cpu"), load_tokenizer(path)
    rows = []
    for label, (p, s, t) in [("prompts 8", (8, 4, 64)), ("prompts 16 (base)", (16, 4, 64)), ("prompts 32", (32, 4, 64)),
                             ("samples 1", (16, 1, 64)), ("samples 2", (16, 2, 64)), ("samples 8", (16, 8, 64)),
                             ("new tokens 32", (16, 4, 32)), ("new tokens 128", (16, 4, 128))]:
        secs, n = gen_time(path, model, tok, p, s, t)
        rows.append({"generation": label, "prompts x samples x max tokens": f"{p} x {s} x {t}", "tokens": n,
                     "seconds": f"{secs:.1f}", "tokens/s": f"{n / secs:.0f}"})
        print(rows[-1], flush=True)
    print("\n" + table(rows, list(rows[0])) + "\n", flush=True)
    rows = []
    for label, (n, rep) in [("pairs 8", (8, 1)), ("pairs 16 (base)", (16, 1)), ("pairs 32", (32, 1)),
                            ("sequence x2", (16, 2)), ("sequence x4", (16, 4))]:
        secs = train_time(path, n, rep)
        rows.append({"DPO": label, "pairs": n, "solution repeated": rep, "seconds": f"{secs:.1f}",
                     "pairs/s": f"{n / secs:.2f}"})
        print(rows[-1], flush=True)
    print("\n" + table(rows, list(rows[0])))


if __name__ == "__main__":
    main()
