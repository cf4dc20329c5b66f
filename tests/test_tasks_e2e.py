"""The task families end to end: `python -m pipeline` in a subprocess on the tiny model (experiment=smoke) for the
built-in code task (IRPO, pass@1 in the summary line, metrics, W&B and inspect), four reasoning-gym generators,
the README's GSM8K command on a local file in GSM8K's format, and malformed input files failing in one line."""

from __future__ import annotations

import glob
import json
import subprocess
import time

import pandas as pd
import pytest

from conftest import ROOT, TINY, pipeline_cmd, run_pipeline
from stages.sandbox import _mode
from test_tasks import GSM8K_ROWS, _write_jsonl
from wandb_reader import history

ALLOW = [] if _mode() == "bwrap" else ["task.sandbox.weaker_isolation=true"]


def test_irpo_on_the_builtin_code_task(tmp_path, env):
    run = tmp_path / "run"
    p = run_pipeline(run, "task=code", *TINY, "iterations=1", *ALLOW, env=env)
    assert p.stdout.startswith("sandbox: ")  # the isolation the run got, said once before anything runs
    assert "held-out pass@1" in p.stdout and "[iter 1]" in p.stdout
    metrics = json.loads((run / "iter_01" / "metrics.json").read_text())
    assert metrics["eval/pass@1"] == metrics["eval/accuracy"] and "eval/accuracy_lenient" not in metrics
    judged = pd.read_parquet(run / "iter_01" / "judgments.parquet")
    assert {"status", "reward", "feedback"} <= set(judged.columns) and len(judged) == 8
    pairs = pd.read_parquet(run / "iter_01" / "pairs.parquet")
    # the random tiny model writes no passing program: the chosen side is the reference function, in a code block
    assert len(pairs) and all(c[0]["content"].startswith("```python\ndef ") for c in pairs["chosen"])
    rows = history(glob.glob(str(run / "wandb" / "offline-run-*" / "run-*.wandb"))[0])
    assert sorted(r["iteration"] for r in rows if "eval/pass@1" in r) == [0, 1]
    shown = subprocess.run(["python", "-m", "pipeline.inspect", str(run)], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=120)
    assert shown.returncode == 0 and "held-out pass@1" in shown.stdout, shown.stderr


@pytest.mark.parametrize("dataset, gold", [("countdown", False), ("gsm_symbolic", True), ("basic_arithmetic", False),
                                           ("chain_sum", False)])
def test_reasoning_gym_tasks_run_end_to_end(tmp_path, env, dataset, gold):
    run = tmp_path / "run"
    p = run_pipeline(run, "task=gym", f"task.dataset={dataset}", *TINY, "iterations=1", "logger=none", env=env)
    assert ("gives no gold solutions" in p.stdout) != gold
    prompts = pd.read_parquet(run / "iter_01" / "prompts.parquet")
    held = pd.read_parquet(run / "iter_00" / "eval.parquet")
    assert not set(prompts["prompt_id"]) & set(held["prompt_id"]) and len(held) == 8
    assert json.loads((run / "iter_01" / "metrics.json").read_text())["pairs/count"] == (4 * 2 if gold else 0)


def test_readme_gsm8k_command_on_a_local_file(tmp_path, env):
    data = tmp_path / "data"
    data.mkdir()
    rows = [{**r, "question": f"{r['question']} (variant {k})"} for k in range(6) for r in GSM8K_ROWS]
    _write_jsonl(data / "gsm8k.jsonl", rows)
    readme = (ROOT / "README.md").read_text()
    command = "python -m pipeline task=file task.source=data/gsm8k.jsonl"
    assert command in readme
    args = command.split()[3:] + [*TINY, "iterations=1", "logger=none", "task.test_size=8"]
    p = subprocess.run(pipeline_cmd(tmp_path / "run", *args), cwd=tmp_path, env={**env, "PYTHONPATH": str(ROOT)},
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    pairs = pd.read_parquet(tmp_path / "run" / "iter_01" / "pairs.parquet")
    chosen = [c[0]["content"] for c in pairs["chosen"]]
    assert chosen and all(c.split("\n")[-1].startswith("Answer: ") and "<<" not in c for c in chosen)


def test_malformed_file_fails_in_one_line_before_any_model_loads(tmp_path, env):
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"question": "a?", "answer": "1"}\n{"question": "b?", "ans\n')
    t0 = time.time()
    p = subprocess.run(pipeline_cmd(tmp_path / "run", "task=file", f"task.source={bad}", "model=smollm2"),
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 2 and p.stderr.strip() == f"error: {bad}:2: not a JSON object (Unterminated string " \
                                                     f"starting at, column 20)", p.stderr
    assert "Traceback" not in p.stderr and not (tmp_path / "run" / "iter_00").exists()
    assert time.time() - t0 < 120
