"""Generation throughput: the project's generate stage vs a plain baseline, side by side in one run.

    python benchmarks/bench_generate.py                      # the default job's shapes, embedded SmolLM2-135M
    python benchmarks/bench_generate.py --models embedded,tiny --prompts 16 --samples 4 --tokens 64 --batches 1,4,16

Baseline: what most self-rewarding ports do — the fp32 model, ``model.generate`` called once per prompt with
``num_return_sequences``. The stage: ``stages.generate.generate`` (prompts sorted by length and batched,
``batch_size`` prompts x N samples per forward, bf16 weights where the CPU has native bf16). Same prompts
(the default job's arithmetic questions), same sampling (T 0.8, top-p 0.95, top-k off), same number of new
tokens per sequence at most; the table shows the tokens each row actually generated (a sequence stops at
end-of-sequence). Model loading is not timed. The compute bound is the measured bf16 (or fp32) matmul
FLOP/s of this machine; a generated token costs 2 x parameters FLOPs.

Ceiling rows: the model's own linear layers (every projection and the LM head, its weights and dtype) run back to
back on batch x samples rows of random activations, one decoding step's matmuls with nothing else — no attention,
KV cache, sampling or Python around them. A stage row's distance to its ceiling is the time outside the matmuls;
the ceiling's distance to the bound is what matmuls of so few rows achieve on this CPU.
"""

from __future__ import annotations

import argparse
import time

import common  # noqa: F401  (path and environment)
from common import MODELS, arithmetic_prompts, count, counts, header, matmul_flops, model_path, names, table


def baseline(path: str, prompts: list[dict], n: int, tokens: int, seed: int) -> tuple[int, float]:
    import torch

    from stages.modeling import load_model, load_tokenizer, stop_token_ids

    tok, model = load_tokenizer(path), load_model(path, "float32", "cpu")
    stops = stop_token_ids(tok, model)
    generated, t0 = 0, time.perf_counter()
    for i, p in enumerate(prompts):
        ids = tok.apply_chat_template(p["messages"], add_generation_prompt=True, return_tensors="pt", return_dict=True)
        torch.manual_seed(seed + i)
        with torch.inference_mode():
            out = model.generate(**ids, do_sample=True, temperature=0.8, top_p=0.95, top_k=0, max_new_tokens=tokens,
                                 num_return_sequences=n, pad_token_id=tok.pad_token_id, eos_token_id=stops)
        for seq in out[:, ids["input_ids"].shape[1]:].tolist():
            ends = [k for k, t in enumerate(seq) if t in stops]
            generated += ends[0] if ends else len(seq)
    return generated, time.perf_counter() - t0


def stage(path: str, prompts: list[dict], n: int, tokens: int, seed: int, batch: int, dtype: str) -> tuple[int, float]:
    from stages.generate import GenerateConfig, generate
    from stages.modeling import load_model, load_tokenizer

    cfg = GenerateConfig(num_samples=n, max_new_tokens=tokens, batch_size=batch, seed=seed, dtype=dtype, device="cpu")
    tok, model = load_tokenizer(path), load_model(path, dtype, "cpu")
    t0 = time.perf_counter()
    records, _ = generate(path, prompts, cfg, desc=f"stage b{batch} {dtype}", model=model, tokenizer=tok)
    return sum(r["num_tokens"] for r in records), time.perf_counter() - t0


def linear_ceiling(path: str, rows: int, dtype: str, steps: int = 20) -> tuple[int, float]:
    """(tokens, seconds) of `steps` decoding steps of `rows` sequences through the model's linear layers alone (see
    the docstring)."""
    import torch

    from stages.modeling import load_model

    layers = [m for m in load_model(path, dtype, "cpu").modules() if isinstance(m, torch.nn.Linear)]
    inputs = {m.in_features: torch.randn(rows, m.in_features, dtype=m.weight.dtype) for m in layers}
    with torch.inference_mode():
        for m in layers:  # warm-up
            m(inputs[m.in_features])
        t0 = time.perf_counter()
        for _ in range(steps):
            for m in layers:
                m(inputs[m.in_features])
    return rows * steps, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", type=names(*MODELS), default="embedded")
    ap.add_argument("--prompts", type=count, default=32)  # the default job: 32 prompts x 4 samples, <= 128 tokens,
    ap.add_argument("--samples", type=count, default=4)  # 16 prompts per forward (conf/generate/hf.yaml)
    ap.add_argument("--tokens", type=count, default=128)
    ap.add_argument("--batches", type=counts, default="16,32")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    import torch

    from stages.modeling import cpu_has_bf16

    header("generation: generate stage vs per-prompt transformers baseline",
           f"python benchmarks/bench_generate.py --models {','.join(a.models)} --prompts {a.prompts} "
           f"--samples {a.samples} --tokens {a.tokens} --batches {','.join(map(str, a.batches))}",
           f"{a.prompts} arithmetic prompts x {a.samples} samples, <= {a.tokens} new tokens, T 0.8, top-p 0.95")
    peak = {"float32": matmul_flops(torch.float32), "bfloat16": matmul_flops(torch.bfloat16)}
    print(f"measured matmul: fp32 {peak['float32'] / 1e9:.0f} GFLOP/s, bf16 {peak['bfloat16'] / 1e9:.0f} GFLOP/s "
          f"(native bf16: {cpu_has_bf16()})\n")
    fast = "bfloat16" if cpu_has_bf16() else "float32"
    prompts = arithmetic_prompts(a.prompts)
    for name in a.models:
        path = model_path(name)
        from transformers import AutoConfig, AutoModelForCausalLM

        params = sum(p.numel() for p in AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(path)).parameters())
        runs = [("baseline: per prompt, fp32", "float32", lambda: baseline(path, prompts, a.samples, a.tokens, a.seed))]
        for b in a.batches:
            runs.append((f"stage: batch {b}, fp32", "float32",
                         lambda b=b: stage(path, prompts, a.samples, a.tokens, a.seed, b, "float32")))
            if fast != "float32":
                runs.append((f"stage: batch {b}, bf16", fast,
                             lambda b=b: stage(path, prompts, a.samples, a.tokens, a.seed, b, fast)))
        short = "bf16" if fast != "float32" else "fp32"
        for b in a.batches:
            runs.append((f"ceiling: linear layers alone, {b * a.samples} rows, {short}", fast,
                         lambda b=b: linear_ceiling(path, b * a.samples, fast)))
        rows, base = [], None
        for label, dtype, fn in runs:
            tokens, secs = fn()
            tps = tokens / secs
            base = base or tps
            flops = 2 * params * tps
            rows.append({"run": label, "tokens": tokens, "seconds": f"{secs:.1f}", "tokens/s": f"{tps:.1f}",
                         "x baseline": f"{tps / base:.2f}", "GFLOP/s": f"{flops / 1e9:.1f}",
                         "% of bf16 bound": f"{100 * flops / peak['bfloat16']:.1f}",
                         "% of own-dtype bound": f"{100 * flops / peak[dtype]:.1f}"})
        print(f"## {name} ({params / 1e6:.1f}M parameters: {path})")
        print(table(rows, list(rows[0])) + "\n", flush=True)


if __name__ == "__main__":
    main()
