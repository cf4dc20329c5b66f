"""Shared pieces of the benchmark scripts: the machine's measured matmul throughput, the prompts, and printing."""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

import warnings  # noqa: E402

warnings.filterwarnings("ignore", category=FutureWarning)

# glibc's own variable for a process started with it: every block of 1 MiB or more gets its own mapping, unmapped
# when freed (no heap fragmentation; every tensor's pages faulted in and zeroed again). The opt-in the README measures.
MMAP_1MIB_ENV = {"MALLOC_MMAP_THRESHOLD_": str(1 << 20)}
# glibc >= 2.35 tunable: malloc asks for transparent huge pages (madvise) on its heap and large mappings
HUGETLB_ENV = {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}


def mimalloc_env() -> dict:
    """The environment that starts a process on mimalloc (LD_PRELOAD), the allocator `python -m pipeline` restarts
    itself on (pipeline ``preload_allocator``); exits when its wheel is not installed."""
    from pipeline import mimalloc_preload

    preload = mimalloc_preload()
    if preload is None:
        sys.exit("mimalloc is not installed: pip install cmeel-mimalloc, or leave out +mimalloc")
    return {"LD_PRELOAD": preload}


def time_calls(owner, name: str, into: dict, bucket: str) -> None:
    """Wrap owner.name so that every call adds its wall time to into[bucket] (instrumentation, same code runs)."""
    fn = getattr(owner, name)

    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            into[bucket] = into.get(bucket, 0.0) + time.perf_counter() - t0

    setattr(owner, name, wrapper)


def time_dpo(into: dict, bucket: str) -> None:
    """Time DPO training as a whole: building the DPOTrainer (tokenizing; TRL precomputes the reference log-probs
    there) plus Trainer.train(). Timing train() alone leaves the precomputed reference pass out."""
    from transformers import Trainer
    from trl import DPOTrainer

    time_calls(DPOTrainer, "__init__", into, bucket)
    time_calls(Trainer, "train", into, bucket)


def count(text: str) -> int:
    """argparse type: an integer >= 1 (a bad value is argparse's one `error:` line, before any model loads)."""
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"an integer >= 1, got {text!r}")
    return n


def counts(text: str) -> list[int]:
    """argparse type: comma-separated integers >= 1 ("16,32")."""
    return [count(t) for t in text.split(",")]


def names(*choices: str):
    """argparse type: comma-separated names, each one of `choices`."""
    def parse(text: str) -> list[str]:
        bad = [t for t in text.split(",") if t not in choices]
        if bad:
            raise argparse.ArgumentTypeError(f"{bad[0]!r} is not one of {', '.join(choices)}")
        return text.split(",")
    return parse


# model_path's names: 'embedded' (SmolLM2-135M-Instruct) or 'tiny' (2-layer random Llama), as the pipeline names them
MODEL_SPECS = {"embedded": "embedded:smollm2-135m-instruct", "tiny": "tiny:llama"}
MODELS = tuple(MODEL_SPECS)


def cache_dir() -> str:
    return os.environ.get("SELFIMPROVE_CACHE", str(Path("~/.cache/selfimprove").expanduser()))


def model_path(name: str) -> str:
    """The folder of a MODELS name, as the pipeline resolves it."""
    from pipeline.models import resolve_model

    return resolve_model(MODEL_SPECS[name], cache_dir())


def matmul_flops(dtype, n: int = 2048, seconds: float = 2.0) -> float:
    """Measured FLOP/s of an n x n matmul on this machine (all threads torch uses)."""
    import torch

    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(3):
        a @ b
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        reps += 1
    return 2 * n ** 3 * reps / (time.perf_counter() - t0)


def arithmetic_task():
    """(TaskConfig, LoadedTask) of the default job's task: the built-in arithmetic problems, difficulty 1."""
    from stages.tasks import TaskConfig, load_task

    cfg = TaskConfig(difficulties=[1], prompt_template='{question}\nSolve it step by step. End with a final line of '
                                                      'the form "Answer: <number>".')
    return cfg, load_task(cfg)


def arithmetic_prompts(n: int, seed_offset: int = 0, split: str = "train") -> list[dict]:
    """The default job's prompts: n questions of the built-in arithmetic task (difficulty 1); split "test": its
    held-out questions, in the order the pipeline evaluates them."""
    cfg, task = arithmetic_task()
    return [{"prompt_id": p.id, "messages": task.messages(p, cfg), "problem": p}
            for p in getattr(task, split)[seed_offset:seed_offset + n]]


def machine() -> str:
    import torch

    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor()
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads)"


def table(rows: list[dict], cols: list[str]) -> str:
    widths = [max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in cols]
    out = ["  ".join(c.rjust(w) for c, w in zip(cols, widths)), "  ".join("-" * w for w in widths)]
    out += ["  ".join(str(r.get(c, "")).rjust(w) for c, w in zip(cols, widths)) for r in rows]
    return "\n".join(out)


def header(title: str, command: str, inputs: str) -> None:
    print(f"# {title}\n# {time.strftime('%Y-%m-%d %H:%M')} on {machine()}\n# reproduce: {command}\n# inputs: {inputs}\n",
          flush=True)
