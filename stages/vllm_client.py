"""generate.backend=vllm: generation by vLLM worker processes (stages/vllm_worker.py), same records as the HF backend.

Each call writes one request per data-parallel worker (a contiguous share of the prompts), starts the workers —
each on its own `tensor_parallel_size` GPUs, from the interpreter named by ``generate.vllm.python`` (an
environment with vLLM; "" = this one) — waits, and reads the responses back in prompt order. A worker exits
when done, so its GPU memory is free for training. When the model folder holds the LoRA adapter it was trained
with (``model/adapter``), vLLM serves that adapter on its base model directly (``lora: true``).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

WORKER = Path(__file__).with_name("vllm_worker.py")


@dataclass
class VllmOptions:
    python: str = ""  # interpreter of the environment with vLLM ("" = this one)
    tensor_parallel_size: int = 1  # GPUs per worker
    data_parallel_size: int = 1  # workers, each with its share of the prompts
    gpu_memory_utilization: float = 0.85
    max_model_len: int | None = None
    enforce_eager: bool = False
    dtype: str = "auto"
    lora: bool = True  # serve a trained LoRA adapter directly (else the merged checkpoint)

    @classmethod
    def parse(cls, values: dict) -> "VllmOptions":
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(values or {}) - names)
        if unknown:
            raise ValueError(f"generate.vllm: unknown option(s) {unknown}; valid: {sorted(names)}")
        opts = cls(**(values or {}))
        if opts.tensor_parallel_size < 1 or opts.data_parallel_size < 1:
            raise ValueError("generate.vllm.tensor_parallel_size and data_parallel_size must be >= 1")
        if not 0 < opts.gpu_memory_utilization <= 1:
            raise ValueError("generate.vllm.gpu_memory_utilization must be in (0, 1]")
        if opts.python and not shutil.which(opts.python):
            raise ValueError(f"generate.vllm.python: no interpreter {opts.python!r}")
        return opts


def build_requests(model_path: str, prompts: list[dict], cfg, opts: VllmOptions) -> list[dict]:
    """One request per data-parallel worker: contiguous shares of the prompts, each prompt with its index in the
    whole call (its sampling seed is seed + index, so the split does not change the completions)."""
    model, lora, rank = str(model_path), None, None
    adapter = Path(model_path) / "adapter"
    if opts.lora and (adapter / "adapter_config.json").is_file():
        acfg = json.loads((adapter / "adapter_config.json").read_text())
        base = acfg.get("base_model_name_or_path")
        if base and (Path(base) / "config.json").is_file():
            model, lora, rank = base, str(adapter), int(acfg.get("r", 16))
    engine = {"tensor_parallel_size": opts.tensor_parallel_size, "gpu_memory_utilization": opts.gpu_memory_utilization,
              "enforce_eager": opts.enforce_eager, "dtype": opts.dtype, "seed": cfg.seed}
    if opts.max_model_len:
        engine["max_model_len"] = opts.max_model_len
    sampling = {"n": cfg.num_samples, "temperature": cfg.temperature, "top_p": cfg.top_p,
                "max_tokens": cfg.max_new_tokens, "seed": cfg.seed}
    indexed = [{"prompt_id": p["prompt_id"], "index": i, "messages": p["messages"]} for i, p in enumerate(prompts)]
    k = opts.data_parallel_size
    size = -(-len(indexed) // k) if indexed else 0
    shares = [indexed[i * size:(i + 1) * size] for i in range(k)]
    return [{"model": model, "tokenizer": str(model_path), "lora": lora, "lora_rank": rank, "engine": engine,
             "sampling": sampling, "prompts": share} for share in shares if share]


def read_response(path: Path, request: dict) -> tuple[list[dict], dict]:
    """The records of one worker's response, checked against its request."""
    data = json.loads(Path(path).read_text())
    records, n = data["records"], request["sampling"]["n"]
    want = {p["prompt_id"] for p in request["prompts"]}
    got: dict[str, int] = {}
    for r in records:
        missing = {"prompt_id", "sample_idx", "completion", "num_tokens", "finish_reason"} - set(r)
        if missing:
            raise ValueError(f"{path}: a record lacks {sorted(missing)}")
        got[r["prompt_id"]] = got.get(r["prompt_id"], 0) + 1
    bad = sorted(p for p in want if got.get(p) != n) + sorted(set(got) - want)
    if bad:
        raise ValueError(f"{path}: expected {n} completion(s) for each of {len(want)} prompts; wrong for {bad[:5]}")
    return records, data.get("stats", {})


def gpu_groups(opts: VllmOptions) -> list[str]:
    """CUDA_VISIBLE_DEVICES of each data-parallel worker; RuntimeError when too few GPUs are visible (checked before
    any model loads, pipeline/loop.py)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible:
        ids = [g for g in visible.split(",") if g.strip()]
    else:
        import torch

        ids = [str(i) for i in range(torch.cuda.device_count())]
    need = opts.tensor_parallel_size * opts.data_parallel_size
    if len(ids) < need:
        raise RuntimeError(f"generate.vllm: tensor_parallel_size x data_parallel_size = {need} GPUs, "
                           f"{len(ids)} visible")
    tp = opts.tensor_parallel_size
    return [",".join(ids[i * tp:(i + 1) * tp]) for i in range(opts.data_parallel_size)]


def generate_vllm(model_path: str, prompts: list[dict], cfg, desc: str = "generate") -> tuple[list[dict], dict]:
    from stages.generate import in_prompt_order
    from stages.process import run_workers

    t0 = time.time()
    opts = VllmOptions.parse(cfg.vllm)
    requests = build_requests(model_path, prompts, cfg, opts)
    gpus = gpu_groups(opts)
    work = Path(tempfile.mkdtemp(prefix="vllm-"))
    jobs = []
    for k, req in enumerate(requests):
        (work / f"request.{k}.json").write_text(json.dumps(req))
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": gpus[k]}
        jobs.append(([opts.python or sys.executable, str(WORKER), str(work / f"request.{k}.json"),
                      str(work / f"response.{k}.json")], env, work / f"worker.{k}.log"))
    print(f"{desc}: {len(prompts)} prompts x {cfg.num_samples} on vLLM ({len(jobs)} worker(s), "
          f"tp={opts.tensor_parallel_size}; logs in {work})", file=sys.stderr, flush=True)
    run_workers(jobs, what=f"{desc} (vLLM)")
    parts = [read_response(work / f"response.{k}.json", req) for k, req in enumerate(requests)]
    shutil.rmtree(work, ignore_errors=True)
    records = in_prompt_order(prompts, [r for recs, _ in parts for r in recs])
    tokens, secs = sum(r["num_tokens"] for r in records), time.time() - t0
    return records, {"tokens": tokens, "seconds": round(secs, 2), "tokens_per_s": round(tokens / max(secs, 1e-9), 1),
                     "model_fingerprint": f"vllm:{requests[0]['model'] if requests else model_path}"
                                          + (f"+{requests[0]['lora']}" if requests and requests[0]["lora"] else ""),
                     "truncated": sum(r["finish_reason"] == "length" for r in records),
                     "vllm": asdict(opts) | {"version": parts[0][1].get("vllm_version") if parts else None}}
