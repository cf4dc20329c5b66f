"""The task families end to end: `python -m pipeline` in a subprocess on the tiny model (experiment=smoke) for the
built-in code task (IRPO, pass@1 in the summary line, metrics, W&B and inspect), four reasoning-gym generators,
the README's GSM8K command on a local file in GSM8K's format, and malformed input files failing in one line."""

from __future__ import annotations

import glob
import subprocess
import time

import pandas as pd
import pytest

from conftest import ROOT, TINY, compose_config, pipeline_cmd
from stages.sandbox import _mode
from test_tasks import GSM8K_ROWS, _write_jsonl
from wandb_reader import history as history_of

ALLOW = [] if _mode() == "bwrap" else ["task.sandbox.weaker_isolation=true"]


def _run(tmp_path, cache_dir, *overrides):
    """`pipeline.loop.run` in this process (the CLI is tested below and in test_e2e.py): saves the interpreter and
    library start-up of a subprocess per run."""
    from pipeline.loop import run

    cfg = compose_config(*overrides, *TINY, "iterations=1", f"paths.cache_dir={cache_dir}")
    return run(cfg, tmp_path / "run")


def test_irpo_on_the_builtin_code_task(tmp_path, cache_dir, capsys, monkeypatch):
    from pipeline.inspect import summary

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    history = _run(tmp_path, cache_dir, "task=code", *ALLOW)
    out = capsys.readouterr().out
    assert out.startswith("sandbox: ")  # the isolation the run got, said once before anything runs
    assert "held-out pass@1" in out and "[iter 1]" in out
    run = tmp_path / "run"
    assert history[1]["eval/pass@1"] == history[1]["eval/accuracy"] and "eval/accuracy_lenient" not in history[1]
    judged = pd.read_parquet(run / "iter_01" / "judgments.parquet")
    assert {"status", "reward", "feedback"} <= set(judged.columns) and len(judged) == 8
    pairs = pd.read_parquet(run / "iter_01" / "pairs.parquet")
    # the random tiny model writes no passing program: the chosen side is the reference function, in a code block
    assert len(pairs) and all(c[0]["content"].startswith("```python\ndef ") for c in pairs["chosen"])
    rows = history_of(glob.glob(str(run / "wandb" / "offline-run-*" / "run-*.wandb"))[0])
    assert sorted(r["iteration"] for r in rows if "eval/pass@1" in r) == [0, 1]
    assert "held-out pass@1" in summary(run)  # what inspect prints


@pytest.mark.parametrize("dataset, gold", [("countdown", False), ("gsm_symbolic", True), ("basic_arithmetic", False),
                                           ("chain_sum", False)])
def test_reasoning_gym_tasks_run_end_to_end(tmp_path, cache_dir, capsys, dataset, gold):
    history = _run(tmp_path, cache_dir, "task=gym", f"task.dataset={dataset}", "logger=none")
    assert ("gives no gold solutions" in capsys.readouterr().out) != gold
    run = tmp_path / "run"
    prompts = pd.read_parquet(run / "iter_01" / "prompts.parquet")
    held = pd.read_parquet(run / "iter_00" / "eval.parquet")
    assert not set(prompts["prompt_id"]) & set(held["prompt_id"]) and len(held) == 8
    assert history[1]["pairs/count"] == (4 * 2 if gold else 0) and "eval/accuracy" in history[1]


def test_readme_gsm8k_command_on_a_local_file(tmp_path, cache_dir, monkeypatch):
    """The README's command, as written, from a folder holding data/gsm8k.jsonl in GSM8K's format."""
    (tmp_path / "data").mkdir()
    rows = [{**r, "question": f"{r['question']} (variant {k})"} for k in range(6) for r in GSM8K_ROWS]
    _write_jsonl(tmp_path / "data" / "gsm8k.jsonl", rows)
    command = "python -m pipeline task=file task.source=data/gsm8k.jsonl"
    assert command in (ROOT / "README.md").read_text()
    monkeypatch.chdir(tmp_path)
    _run(tmp_path, cache_dir, *command.split()[3:], "logger=none", "task.test_size=8")
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


def test_majority_vote_is_refused_on_a_code_task_before_any_model_loads(tmp_path, cache_dir):
    from pipeline.config import ConfigError

    with pytest.raises(ConfigError, match="eval.measures: maj votes over final answers; task code is checked by "
                                          "running programs"):
        _run(tmp_path, cache_dir, "task=code", "eval=maj", "eval.maj_k=2", "logger=none", *ALLOW)
    assert not (tmp_path / "run" / "iter_00").exists()
    # ... also when only a later iteration's evaluation votes (a schedule): refused before iteration 1 trains
    from pipeline.loop import run

    cfg = compose_config("task=code", *TINY, "iterations=2", "logger=none", *ALLOW, f"paths.cache_dir={cache_dir}",
                         "+schedule.eval.measures=[[accuracy],[accuracy,maj]]", "+schedule.eval.maj_k=[0,2]")
    with pytest.raises(ConfigError, match="eval.measures: maj votes over final answers; task code"):
        run(cfg, tmp_path / "scheduled")
    assert not (tmp_path / "scheduled" / "iter_00").exists()
