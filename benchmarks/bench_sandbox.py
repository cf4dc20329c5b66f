"""Sandboxed checks per second: the code checker (stages/sandbox.py) in each isolation mode this machine has,
against a plain baseline, side by side in one run.

    python benchmarks/bench_sandbox.py                 # 72 checks: the built-in code task's reference solutions x2
    python benchmarks/bench_sandbox.py --repeat 4 --workers 1

Baseline: what an unsandboxed harness does — `python -c <program + tests>` in a subprocess per check, same
interpreter, same parallelism (no namespaces, no rlimits, no marker). Rows: bubblewrap + rlimits (the default
where bwrap works), rlimits only (task.sandbox.weaker_isolation=true on a machine without bwrap). Every check
runs the real tests of the built-in problems; the table also says how many passed (all should).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import common  # noqa: F401  (path and environment)
from common import count, header, table


def jobs(repeat: int) -> list[tuple[str, str]]:
    from stages.tasks import TaskConfig, load_task
    from stages.tasks.code import program

    task = load_task(TaskConfig(name="code", source="code", sandbox={"weaker_isolation": True}))
    out = []
    for p in (task.train + task.test) * repeat:
        code = p.solution.split("```python\n", 1)[1].rsplit("```", 1)[0]
        out.append((program(p, code), json.loads(p.answer)["tests"]))
    return out


def baseline(work: list[tuple[str, str]], workers: int) -> int:
    python = getattr(sys, "_base_executable", None) or sys.executable

    def one(job):
        return subprocess.run([python, "-I", "-S", "-c", job[0] + "\n" + job[1]], capture_output=True,
                              timeout=30).returncode == 0

    with ThreadPoolExecutor(workers) as pool:
        return sum(pool.map(one, work))


def sandboxed(work: list[tuple[str, str]], workers: int, mode: str | None) -> int:
    from stages import sandbox

    real = sandbox._setup()
    if mode is not None:
        sandbox._setup = lambda: (mode, real[1])  # noqa: E731  (the weaker mode, measured on purpose)
    try:
        cfg = sandbox.SandboxConfig(workers=workers, weaker_isolation=True)
        return sum(r.passed for r in sandbox.run_many(work, cfg))
    finally:
        sandbox._setup = lambda: real  # noqa: E731


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=count, default=2)
    ap.add_argument("--workers", type=count, default=os.cpu_count() or 1)
    args = ap.parse_args()
    from stages import sandbox

    work = jobs(args.repeat)
    header("Sandboxed checks per second", f"python benchmarks/bench_sandbox.py --repeat {args.repeat} "
           f"--workers {args.workers}", f"{len(work)} programs (built-in code task, reference solutions), "
           f"{args.workers} at once; this machine's best isolation: {sandbox._mode()}")
    rows, base = [], None
    cases = [("plain subprocess (baseline)", lambda: baseline(work, args.workers))]
    if sandbox._mode() == "bwrap":
        cases.append(("bubblewrap + rlimits (default)", lambda: sandboxed(work, args.workers, None)))
    cases.append(("rlimits only (weaker_isolation)", lambda: sandboxed(work, args.workers, "rlimits")))
    for name, fn in cases:
        fn()  # warm the page cache and the probe
        t0 = time.perf_counter()
        passed = fn()
        seconds = time.perf_counter() - t0
        rate = len(work) / seconds
        base = base or rate
        rows.append({"run": name, "checks": len(work), "passed": passed, "seconds": f"{seconds:.2f}",
                     "checks/s": f"{rate:.1f}", "vs baseline": f"{rate / base:.2f}x"})
    print(table(rows, ["run", "checks", "passed", "seconds", "checks/s", "vs baseline"]))


if __name__ == "__main__":
    main()
