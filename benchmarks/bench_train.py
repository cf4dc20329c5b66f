"""DPO throughput: the project's train stage vs TRL's DPOTrainer with its defaults, side by side in one run.

    python benchmarks/bench_train.py                        # embedded SmolLM2-135M, 32 pairs
    python benchmarks/bench_train.py --model tiny --pairs 64

Identical pairs (the default job's arithmetic questions: the gold step-by-step solution as chosen, the same
solution with wrong numbers as rejected), the identical loss (IRPO's DPO + NLL: loss_type sigmoid + sft,
weights 1 and 1, beta 0.1), one epoch, 8 pairs per optimizer step, full fine-tuning, fp32 master weights.
Baseline: ``DPOConfig`` defaults plus ``use_cpu=True`` (TRL's gradient checkpointing on, reference model
forward on the fly). Both sides are timed over building the DPOTrainer (tokenizing; precomputed reference
log-probs are computed there) plus ``Trainer.train()``; model loading and saving are not timed. Each configuration runs in its own process, so its
peak resident memory is its own.
The compute bound counts 6 x parameters FLOPs per trained token (forward + backward) plus 2 x parameters
per reference token, against the measured matmul FLOP/s of the machine's fast dtype (bf16 where the CPU has it
natively, else fp32: emulated bf16 matmuls run at a few GFLOP/s and would make every figure look large).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
from pathlib import Path

import common  # noqa: F401
from common import (HUGETLB_ENV, MODELS, MMAP_1MIB_ENV, arithmetic_prompts, count, header, matmul_flops, mimalloc_env,
                    model_path, table, time_dpo)

CONFIGS = {  # "stage" plus any of +precompute, +ckpt / +nockpt (gradient checkpointing on / off), +batchN (N pairs
    # per micro-batch, 8 per step), +trlhead (TRL's fused LM head as TRL sets it, without the stage's CPU setting),
    # +adam8 (bitsandbytes' 8-bit AdamW instead of TRL's default fused AdamW with fp32 moments), +mmap1m (the worker
    # started with MALLOC_MMAP_THRESHOLD_=1048576: glibc maps every block of 1 MiB or more afresh, see README), +hugetlb
    # (the worker started with GLIBC_TUNABLES=glibc.malloc.hugetlb=1: transparent huge pages for malloc's memory),
    # +mimalloc (the worker started on mimalloc, the allocator `python -m pipeline` restarts itself on; without it a
    # worker runs on the allocator this script was started with, glibc's unless LD_PRELOAD says other):
    # variants to compare
    # (padding_free is accepted but a no-op in TRL 1.16: "temporarily unavailable", it falls back to padding)
    "trl-defaults": "TRL DPOTrainer, DPOConfig defaults + use_cpu=True",
    "trl-fp32": "TRL DPOTrainer, DPOConfig defaults + use_cpu=True, bf16=False (for CPUs without native bf16)",
    "stage": "train stage as shipped (conf/train/dpo.yaml)",
}
PARTS = ("precompute", "ckpt", "nockpt", "trlhead", "adam8", "mmap1m", "hugetlb", "mimalloc")  # and batchN


def configs(text: str) -> list[str]:
    """argparse type of --configs: comma-separated CONFIGS names, each with any of the +PARTS."""
    out = text.split(",")
    for config in out:
        base, *parts = config.split("+")
        if base not in CONFIGS:
            raise argparse.ArgumentTypeError(f"{config!r}: {base!r} is not one of {', '.join(CONFIGS)}")
        bad = [p for p in parts if p not in PARTS and p not in ("batch1", "batch2", "batch4", "batch8")]
        if bad:
            raise argparse.ArgumentTypeError(f"{config!r}: +{bad[0]} is not one of +{', +'.join(PARTS)}, +batchN "
                                             "(N = 1, 2, 4 or 8)")
    return out


def pairs(n: int) -> list[dict]:
    def wrong(solution: str) -> str:  # every number off by one: a plausible, incorrect solution of the same length
        return re.sub(r"\d+", lambda m: str(int(m.group()) + 1), solution)

    out = []
    for p in arithmetic_prompts(n, seed_offset=500):
        sol = p["problem"].solution
        out.append({"prompt": p["messages"], "chosen": [{"role": "assistant", "content": sol}],
                    "rejected": [{"role": "assistant", "content": wrong(sol)}], "prompt_id": p["prompt_id"]})
    return out


def shipped_args() -> dict:
    """conf/train/dpo.yaml's TRL fields (the stage as shipped), one epoch, no bar."""
    import yaml

    from stages.train import PROJECT_KEYS

    conf = yaml.safe_load((Path(__file__).resolve().parents[1] / "conf" / "train" / "dpo.yaml").read_text())
    args = {k: v for k, v in conf.items() if k not in PROJECT_KEYS and k != "seed"}
    return args | {"num_train_epochs": 1, "disable_tqdm": True, "seed": 0}


def worker(config: str, model: str, n: int, out_dir: str) -> dict:
    import torch

    from stages.modeling import load_tokenizer

    timed: dict[str, float] = {}
    time_dpo(timed, "train")  # both sides timed the same way; model loading and saving are not timed
    records = pairs(n)
    path = model_path(model)
    if config.startswith("trl-"):
        from datasets import Dataset
        from transformers import AutoModelForCausalLM
        from trl import DPOConfig, DPOTrainer

        args = DPOConfig(output_dir=out_dir, use_cpu=True, loss_type=["sigmoid", "sft"], loss_weights=[1.0, 1.0],
                         num_train_epochs=1, report_to="none", save_strategy="no", disable_tqdm=True,
                         **({"bf16": False} if config == "trl-fp32" else {}))
        tok = load_tokenizer(path, padding_side="right")
        trainer = DPOTrainer(model=AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32), args=args,
                             processing_class=tok, train_dataset=Dataset.from_list(
                                 [{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in records]))
        trainer.train()
        settings = {"bf16": args.bf16, "gradient_checkpointing": args.gradient_checkpointing,
                    "precompute_ref": args.precompute_ref_log_probs, "batch": args.per_device_train_batch_size}
    else:
        from stages.train import TrainConfig, train

        args = shipped_args()
        parts = config.split("+")[1:]
        if "precompute" in parts:
            args["precompute_ref_log_probs"] = True
        if "ckpt" in parts or "nockpt" in parts:
            args["gradient_checkpointing"] = "ckpt" in parts
        for b in (int(x[5:]) for x in parts if x.startswith("batch")):
            args.update(per_device_train_batch_size=b, gradient_accumulation_steps=8 // b)
        if "adam8" in parts:
            args["optim"] = "adamw_bnb_8bit"
        if "trlhead" in parts:
            import contextlib

            import stages.train

            stages.train._cpu_lm_head = contextlib.nullcontext
        train(path, records, Path(out_dir) / "model", TrainConfig(args=args))
        from stages.modeling import cpu_has_bf16

        settings = {"bf16": f"auto ({cpu_has_bf16()} on this CPU)",
                    "gradient_checkpointing": args["gradient_checkpointing"],
                    "precompute_ref": args.get("precompute_ref_log_probs", False),
                    "batch": f"{args['per_device_train_batch_size']} x {args['gradient_accumulation_steps']}",
                    "lm_head": "TRL's" if "trlhead" in parts else "CPU setting",
                    "optim": args.get("optim", "TRL's default"),
                    "mmap threshold": os.environ.get("MALLOC_MMAP_THRESHOLD_", "glibc's"),
                    "glibc tunables": os.environ.get("GLIBC_TUNABLES", "none"),
                    "LD_PRELOAD": os.environ.get("LD_PRELOAD") or "none"}
    secs = timed["train"]
    tok = load_tokenizer(path)
    tokens = 0
    for r in records:
        prompt = tok.apply_chat_template(r["prompt"], tokenize=False, add_generation_prompt=True)
        for side in ("chosen", "rejected"):
            tokens += len(tok(prompt + r[side][0]["content"], add_special_tokens=False).input_ids)
    return {"seconds": secs, "tokens": tokens, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "settings": settings}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=MODELS, default="embedded")
    ap.add_argument("--pairs", type=count, default=32)
    ap.add_argument("--configs", type=configs, default=",".join(CONFIGS))
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        print("RESULT " + json.dumps(worker(a.worker, a.model, a.pairs, a.out)), flush=True)
        return
    import tempfile

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    header("DPO: train stage vs TRL DPOTrainer defaults",
           f"python benchmarks/bench_train.py --model {a.model} --pairs {a.pairs} --configs {','.join(a.configs)}",
           f"{a.pairs} arithmetic pairs (gold solution vs the same with wrong numbers), DPO + NLL, 1 epoch, "
           "8 pairs per step, full fine-tuning")
    from stages.modeling import cpu_has_bf16

    bound = torch.bfloat16 if cpu_has_bf16() else torch.float32
    peak = matmul_flops(bound)
    path = model_path(a.model)
    params = sum(p.numel() for p in AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(path)).parameters())
    print(f"model {a.model} ({params / 1e6:.1f}M parameters); measured {bound} matmul {peak / 1e9:.0f} GFLOP/s\n",
          flush=True)
    rows, base = [], None
    for config in a.configs:
        with tempfile.TemporaryDirectory() as out:
            parts = config.split("+")[1:]
            env = {**os.environ, **(MMAP_1MIB_ENV if "mmap1m" in parts else {}),
                   **(HUGETLB_ENV if "hugetlb" in parts else {}), **(mimalloc_env() if "mimalloc" in parts else {})}
            p = subprocess.run([sys.executable, __file__, "--worker", config, "--model", a.model, "--pairs",
                                str(a.pairs), "--out", out], capture_output=True, text=True, env=env)
        line = next((x for x in p.stdout.splitlines() if x.startswith("RESULT ")), None)
        if p.returncode != 0 or line is None:
            print(f"{config}: failed ({p.returncode})\n{p.stderr[-3000:]}", flush=True)
            continue
        r = json.loads(line[7:])
        pps = a.pairs / r["seconds"]
        base = base or pps
        flops = (6 + 2) * params * r["tokens"] / r["seconds"]
        rows.append({"run": CONFIGS.get(config, config), "seconds": f"{r['seconds']:.1f}", "pairs/s": f"{pps:.3f}",
                     "x TRL defaults": f"{pps / base:.2f}", "peak RSS MB": f"{r['peak_rss_mb']:.0f}",
                     f"% of {str(bound)[6:]} bound": f"{100 * flops / peak:.1f}",
                     "settings": " ".join(f"{k}={v}" for k, v in r["settings"].items())})
        print(f"{config}: {pps:.3f} pairs/s ({r['tokens']} tokens)", flush=True)
    print()
    print(table(rows, list(rows[0])) if rows else "no results")


if __name__ == "__main__":
    main()
