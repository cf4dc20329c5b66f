"""Peak memory, disk and wall time of `python -m pipeline`, each variant in its own run side by side.

    python benchmarks/bench_memory.py                     # the default job, 1 iteration: baseline vs shipped
    python benchmarks/bench_memory.py --iterations 4      # the whole default job
    python benchmarks/bench_memory.py --variants shipped -- model=tiny experiment=smoke   # any overrides

Each variant is `python -m pipeline` in a subprocess on a fresh run folder (W&B offline). A sampler reads the
resident set size of the whole process tree (the pipeline and every worker it starts) from /proc every 0.1 s;
`/usr/bin/time -v` would report only the largest single process. Also printed: the largest single process
(getrusage of the children), the run folder's size on disk at the end, the stage running at the peak (from the
completion markers' times), and the held-out accuracy per iteration, to show the levers leave results alone.

Variants: ``baseline`` = the settings before the memory work (DPO keeps every activation for the backward pass,
every model kept: ``train.gradient_checkpointing=false keep_models=all``); ``shipped`` = the defaults;
``dpo-2x4`` = the defaults with DPO's batching before 2026-12-02 (2 pairs per micro-batch x 4 accumulation steps
instead of 8 x 1); ``adamw-8bit`` = the defaults with bitsandbytes' 8-bit AdamW for DPO instead of torch's fused
AdamW (fp32 moments); ``glibc`` = the defaults on the C library's malloc instead of mimalloc
(``SELFIMPROVE_MALLOC=system``; the default before 2026-12-03); ``mmap-1mib`` = ``glibc`` with
``MALLOC_MMAP_THRESHOLD_=1048576`` in the environment (glibc maps every block of 1 MiB or more afresh and unmaps it
when freed, instead of reusing its heap: no heap fragmentation, but every tensor's pages are faulted in and zeroed
again); ``hugetlb`` = ``glibc`` with
``GLIBC_TUNABLES=glibc.malloc.hugetlb=1`` (glibc >= 2.35 asks the kernel for transparent huge pages on its heap and
mappings); ``train-subprocess`` = the defaults with DPO in its own Python process
(``runner.train.kind=subprocess``: the training heap starts clean, and its memory goes back when that process ends, at
the price of importing torch, transformers and TRL again each iteration). (Memory is also given back to the system
after every model stage now, in all.)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import common  # noqa: F401
from common import HUGETLB_ENV, MMAP_1MIB_ENV, count, header, names, table

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {
    "baseline": ["train.gradient_checkpointing=false", "keep_models=all"],
    "shipped": [],
    "dpo-2x4": ["train.per_device_train_batch_size=2", "train.gradient_accumulation_steps=4"],  # the DPO batching before
    "adamw-8bit": ["+train.optim=adamw_bnb_8bit"],  # DPO's AdamW moments in 8 bits (bitsandbytes), not the default
    "glibc": [],  # these three: the defaults, run with the environment in VARIANT_ENV
    "mmap-1mib": [],
    "hugetlb": [],
    "train-subprocess": ["runner.train.kind=subprocess"],  # DPO in its own process, the rest as shipped
}
GLIBC = {"SELFIMPROVE_MALLOC": "system"}
VARIANT_ENV = {"glibc": GLIBC, "mmap-1mib": {**GLIBC, **MMAP_1MIB_ENV}, "hugetlb": {**GLIBC, **HUGETLB_ENV}}


def tree_rss(root: int) -> int:
    """Resident bytes of `root` and all its descendants (summed; shared pages count once per process)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
            fields = stat[stat.rindex(")") + 2:].split()
            children.setdefault(int(fields[1]), []).append(int(d))
            rss[int(d)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            continue
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo += children.get(pid, [])
    return total


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def stage_at(run: Path, when: float) -> str:
    """The stage whose [start, finish] interval holds `when` (from the markers), or 'between stages'."""
    for mk in run.glob("iter_*/*.done.json"):
        m = json.loads(mk.read_text())
        end = datetime.strptime(m["finished_at"], "%Y-%m-%dT%H:%M:%S").timestamp() + 1
        if end - m["seconds"] - 1 <= when <= end:
            return f"iter_{m['iteration']:02d}/{m['stage']}"
    return "between stages"


def run_variant(name: str, overrides: list[str], iterations: int, workdir: Path) -> dict:
    run = workdir / name
    cmd = [sys.executable, "-m", "pipeline", f"hydra.run.dir={run}", f"iterations={iterations}", "logger.mode=offline",
           *VARIANTS[name], *overrides]
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", **VARIANT_ENV.get(name, {})}
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.time()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    samples: list[tuple[float, int]] = []

    def sample():
        while proc.poll() is None:
            samples.append((time.time(), tree_rss(proc.pid)))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out = proc.stdout.read()
    proc.wait()
    sampler.join()
    wall = time.time() - t0
    if proc.returncode:
        raise SystemExit(f"variant {name} failed ({proc.returncode}):\n{out[-3000:]}")
    largest = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    when, peak = max(samples, key=lambda s: s[1])
    acc = [json.loads((run / f"iter_{t:02d}" / "metrics.json").read_text())["eval/accuracy"]
           for t in range(iterations + 1)]
    return {"variant": name, "wall s": f"{wall:.0f}", "peak tree RSS GB": f"{peak / 2**30:.2f}",
            "largest process GB": f"{largest / 2**20:.2f}" if largest > before else "(= earlier)",
            "peak during": stage_at(run, when), "disk GB": f"{du(run) / 2**30:.2f}",
            "held-out accuracy": " -> ".join(f"{100 * a:.1f}" for a in acc)}


def main() -> None:
    argv = sys.argv[1:]
    overrides = argv[argv.index("--") + 1:] if "--" in argv else []
    ap = argparse.ArgumentParser()
    ap.add_argument("--iterations", type=count, default=1)
    ap.add_argument("--variants", type=names(*VARIANTS), default="baseline,shipped")
    args = ap.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    header("peak memory, disk and wall time of python -m pipeline",
           f"python benchmarks/bench_memory.py --iterations {args.iterations} --variants {','.join(args.variants)}"
           + (" -- " + " ".join(overrides) if overrides else ""),
           f"iterations={args.iterations} {' '.join(overrides)}; variants: "
           + "; ".join(f"{n}: {' '.join(VARIANTS[n]) or 'defaults'}"
                      + "".join(f" with {k}={v}" for k, v in VARIANT_ENV.get(n, {}).items()) for n in args.variants))
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for name in args.variants:
            rows.append(run_variant(name, overrides, args.iterations, Path(d)))
            print(table(rows[-1:], list(rows[-1])), flush=True)
    base = next((r for r in rows if r["variant"] == "baseline"), None)
    for r in rows:
        if base is not None:
            r["x baseline memory"] = f"{float(r['peak tree RSS GB']) / float(base['peak tree RSS GB']):.2f}"
            r["x baseline disk"] = f"{float(r['disk GB']) / max(float(base['disk GB']), 1e-9):.2f}"
    print("\n" + table(rows, list(rows[-1])))


if __name__ == "__main__":
    main()
