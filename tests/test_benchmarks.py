"""The benchmark scripts refuse a bad argument with one line before any model loads (they used to run on: `--models
bogus` benchmarked the tiny model, `--batches 0` failed inside the stage, and bench_iteration.py ignored an argument
without `=`). The figures themselves come from running the scripts (README "Speed and benchmarks"), not from tests."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import ROOT

CASES = [
    ("bench_generate.py", ["--batches", "16,0"], "argument --batches: an integer >= 1, got '0'"),
    ("bench_generate.py", ["--models", "embedded,bogus"], "argument --models: 'bogus' is not one of embedded, tiny"),
    ("bench_generate.py", ["--tokens", "x"], "argument --tokens: an integer >= 1, got 'x'"),
    ("bench_eval_batch.py", ["--dtypes", "fp16"], "argument --dtypes: 'fp16' is not one of auto, float32, bfloat16"),
    ("bench_eval_batch.py", ["--model", "no/such/folder"],
     "argument --model: 'no/such/folder' is not embedded or tiny nor a checkpoint folder (config.json)"),
    ("bench_train.py", ["--configs", "stage+ckpt,stage+bogus"],
     "argument --configs: 'stage+bogus': +bogus is not one of +precompute, +ckpt, +nockpt, +trlhead, +adam8, "
     "+mmap1m, +hugetlb, +mimalloc, +batchN (N = 1, 2, 4 or 8)"),
    ("bench_train.py", ["--configs", "trl"],
     "argument --configs: 'trl': 'trl' is not one of trl-defaults, trl-fp32, stage"),
    ("bench_train.py", ["--pairs", "0"], "argument --pairs: an integer >= 1, got '0'"),
    ("bench_memory.py", ["--variants", "shipped,nope"], "argument --variants: 'nope' is not one of "),
    ("bench_scaling.py", ["--model", "big"], "argument --model: invalid choice: 'big'"),
    ("bench_sandbox.py", ["--workers", "0"], "argument --workers: an integer >= 1, got '0'"),
    ("bench_refine.py", ["--rounds", "-1"], "argument --rounds: an integer >= 1, got '-1'"),
    ("bench_iteration.py", ["model=tiny", "smoke"],
     "bench_iteration.py: arguments are pipeline overrides (key=value, e.g. model=tiny), got 'smoke'"),
    ("bench_iteration.py", ["model=nope"], "error: In 'config': Could not find 'model/nope' (options: smollm2, tiny)"),
    ("bench_iteration.py", ["train.betta=1"],
     "error: train.betta=1: the config has no train.betta (did you mean train.beta?)"),
]


@pytest.mark.parametrize("script,args,message", CASES, ids=[f"{c[0]} {' '.join(c[1])}" for c in CASES])
def test_a_bad_argument_is_one_line(script, args, message):
    p = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], capture_output=True, text=True,
                       cwd=ROOT, timeout=120)
    last = p.stderr.strip().splitlines()[-1]
    assert p.returncode in (1, 2) and message in last, p.stderr[-2000:]
    assert "Traceback" not in p.stderr


def test_the_gpu_check_script_runs_a_step_and_reports_it(tmp_path, env, tiny_model):
    """benchmarks/gpu_check.sh is run by hand on GPU machines (README "What ran where"); its overrides would rot
    unnoticed, so one of its steps (bf16 training) runs here on the CPU through the script itself."""
    runs = tmp_path / "runs"
    p = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh")], cwd=ROOT, capture_output=True, text=True,
                       env={**env, "PYTHON": sys.executable, "RUNS": str(runs), "STEPS": "B"}, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "--- B_bf16 rc=0 " in p.stdout and "A_default" not in p.stdout  # only the step asked for
    assert "[iter 1]" in (runs / "B_bf16.log").read_text() and (runs / "B_bf16" / "iter_01" / "metrics.json").is_file()
    assert "=== B_bf16" in (runs / "gpu_check.log").read_text()
