"""End-to-end `method=self_rewarding` on the tiny model: self-instruct -> generate -> LLM judge -> score pairs ->
DPO -> open-ended evaluation, two iterations, with resume.

Two set-ups: a scripted judge (tests/fake_models.py: deterministic, so pairs must form and DPO must train,
which a random tiny judge never allows) and the real path where the tiny model writes prompts, judges itself
and is fine-tuned on the seed data first."""

from __future__ import annotations

import glob
import json
from pathlib import Path

import pandas as pd
import pytest

from conftest import TINY, pipeline_cmd, run_pipeline
from test_e2e import _counts, _kill_when, _table
from wandb_reader import history

SR = TINY + ["method=self_rewarding", "judge.max_new_tokens=24", "eval.pairwise_max_new_tokens=16"]
SCRIPTED = SR + ["bootstrap=none", "judge.model=py:tests.fake_models:checksum_judge",
                 "eval.win_rate_judge=py:tests.fake_models:longer_wins", "prompts.model=py:tests.fake_models:writer"]


@pytest.fixture(scope="module")
def scripted_run(tmp_path_factory, env) -> tuple[Path, str]:
    run = tmp_path_factory.mktemp("sr") / "run"
    p = run_pipeline(run, *SCRIPTED, env=env)
    return run, p.stdout


def test_scripted_judge_drives_the_whole_iteration(scripted_run):
    run, out = scripted_run
    assert "[iter 2] self-instruct kept" in out and "vs M0 win" in out and "judge agreement" in out
    for t in (1, 2):
        prompts = _table(run, t, "prompts")
        marker = json.loads((run / f"iter_{t:02d}" / "prompts.done.json").read_text())
        assert marker["stats"]["written"] == 8 and marker["stats"]["kept"] == len(prompts) == 4
        assert all(pid.startswith(f"si-{t:02d}-") for pid in prompts["prompt_id"])
        judged = _table(run, t, "judgments")
        assert len(judged) == 8 and {"judgments", "judgment_scores", "reward", "num_valid"} <= set(judged.columns)
        assert all(len(j) == 3 for j in judged["judgments"])  # J = 3 judgment texts kept per response
        # the scripted judge's first judgment of every third response does not parse: dropped, not scored 0
        dropped = json.loads((run / f"iter_{t:02d}" / "judgments.done.json").read_text())["stats"]
        assert dropped["dropped_unparseable"] == 3 and dropped["valid"] == 21
        for _, r in judged.iterrows():
            valid = [s for s in r["judgment_scores"] if s is not None and s == s]
            assert r["reward"] == pytest.approx(sum(valid) / len(valid))
        pairs = _table(run, t, "pairs")
        assert len(pairs) > 0
        assert (pairs["chosen_reward"] - pairs["rejected_reward"] >= 0.5).all()  # pairs.min_gap
        m = json.loads((run / f"iter_{t:02d}" / "metrics.json").read_text())
        assert m["train/steps"] > 0 and not m.get("train/skipped")
        assert 0 <= m["eval/accuracy"] <= m["eval/instruction_accuracy"] <= 1
        assert m["eval/vs_m0_comparisons"] == 8 and m["eval/vs_m0_no_verdict"] == 0
        assert m["eval/vs_m0_wins"] + m["eval/vs_m0_ties"] + m["eval/vs_m0_losses"] == 8
        assert "judge/hist_5" in m and "eval/judge_top_share" in m
    ev = _table(run, 2, "eval")
    assert {"win_score", "verdict_xy", "verdict_yx", "judge_score", "constraints_met"} <= set(ev.columns)
    # its report: the win rate beside the constraints, and the judge's score histogram per iteration
    assert {"heldout", "judge_scores"} <= {p.stem for p in (run / "report").glob("*.png")}


def test_scripted_run_logs_open_ended_metrics_to_wandb(scripted_run):
    run, _ = scripted_run
    files = glob.glob(str(run / "wandb" / "offline-run-*" / "run-*.wandb"))
    assert len(files) == 1
    rows = [r for r in history(files[0]) if "eval/instruction_accuracy" in r]
    assert [r["iteration"] for r in rows] == [0, 1, 2]
    assert all("eval/vs_m0_win_rate" in r for r in rows[1:]) and "judge/valid" in rows[1]


def test_scripted_run_resumes_after_kill(tmp_path, env, scripted_run):
    reference, _ = scripted_run
    run = tmp_path / "run"
    _kill_when(pipeline_cmd(run, *SCRIPTED, "logger=none"), env,
               lambda: (run / "iter_01" / "model.tmp").exists())  # killed while training M1
    assert (run / "iter_01" / "judgments.done.json").exists() and not (run / "iter_01" / "model.done.json").exists()
    p = run_pipeline(run, *SCRIPTED, "logger=none", env=env)
    assert "[iter 2]" in p.stdout
    assert _counts(run) == _counts(reference)
    for name in ("prompts", "judgments", "pairs"):
        pd.testing.assert_frame_equal(_table(run, 2, name), _table(reference, 2, name))


def test_real_tiny_model_writes_judges_and_bootstraps_itself(tmp_path, env):
    """The real path: the tiny model is fine-tuned on the seed data, writes the prompts, judges its own
    responses (a random model's judgments rarely parse: they are dropped and counted, and no pair is made
    from them) and is evaluated with itself and M0 as judges."""
    run = tmp_path / "run"
    p = run_pipeline(run, *SR, "logger=none", env=env)
    assert "[iter 2]" in p.stdout
    boot = _table(run, 0, "bootstrap")
    assert set(boot["kind"]) == {"ift", "eft", "pairwise"}  # pairwise: eval=open's win-rate verdict format
    assert (run / "iter_00" / "model" / "config.json").is_file() and (run / "iter_00" / "model.done.json").is_file()
    for t in (1, 2):
        judged = json.loads((run / f"iter_{t:02d}" / "judgments.done.json").read_text())["stats"]
        assert judged["judgments"] == 24 and judged["valid"] + judged["dropped_unparseable"] == 24
        pairs = _table(run, t, "pairs") if (run / f"iter_{t:02d}" / "pairs.parquet").stat().st_size else None
        m = json.loads((run / f"iter_{t:02d}" / "metrics.json").read_text())
        assert m["pairs/count"] == (0 if pairs is None else len(pairs))
        assert "eval/vs_m0_comparisons" in m and "eval/judge_scored_share" in m
    # a rerun resumes everything, the bootstrap included
    again = run_pipeline(run, *SR, "logger=none", env=env)
    assert "bootstrap (sft" not in again.stdout + again.stderr


def test_irpo_runs_on_the_constraint_task(tmp_path, env):
    """The built-in constraint set is a verifiable task: the rule checks are IRPO's reward."""
    run = tmp_path / "run"
    p = run_pipeline(run, *TINY, "task=constraints", "pairs.include_gold=false", "logger=none", "iterations=1",
                     "eval.measures=[accuracy,constraints]", env=env)
    assert "[iter 1]" in p.stdout and "constraints met" in p.stdout
    judged = _table(run, 1, "judgments")
    assert set(judged["extractor"]) == {"constraints"} and set(judged["status"]) <= {"correct", "incorrect"}
    assert all(r["reward"] == (r["status"] == "correct") for _, r in judged.iterrows())
    m = json.loads((run / "iter_01" / "metrics.json").read_text())
    assert 0 <= m["eval/accuracy"] <= m["eval/instruction_accuracy"] <= 1 and "judge/accuracy" in m


def test_inspect_shows_judgments_and_pairs(scripted_run, capsys):
    from pipeline.inspect import main

    run, _ = scripted_run
    assert main([str(run), "--judgments", "2", "--pairs", "1", "--iteration", "1"]) == 0
    out = capsys.readouterr().out
    assert "iter_01/judgments.parquet (8 rows), first 2" in out and "SCORE:" in out and "judgment 2:" in out
    assert "None" in out  # the dropped judgment of sample 0 is shown as such
    assert "CHOSEN (sample" in out and "REJECTED (sample" in out and "constraints met" in out
