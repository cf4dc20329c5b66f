"""End-to-end: `python -m pipeline` in a subprocess on the tiny model (experiment=smoke): artifacts, W&B
offline files, resume after kill -9 between and inside stages, config-change detection, multirun."""

from __future__ import annotations

import glob
import json
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import ROOT, TINY, copy_run, pipeline_cmd, run_pipeline, sweep_job
from wandb_reader import history, run_info

TABLES = ("prompts", "generations", "judgments", "pairs", "eval")


def _counts(run: Path) -> dict:
    out = {}
    for mk in sorted(run.glob("iter_*/*.done.json")):
        m = json.loads(mk.read_text())
        out[f"{mk.parent.name}/{m['stage']}"] = m["count"]
    return out


def _table(run: Path, t: int, name: str) -> pd.DataFrame:
    return pd.read_parquet(run / f"iter_{t:02d}" / f"{name}.parquet")


def test_two_iterations_write_every_artifact(reference_run):
    run = reference_run
    assert (run / ".hydra" / "config.yaml").is_file()
    assert (run / "iter_00" / "eval.done.json").is_file()
    for t in (1, 2):
        d = run / f"iter_{t:02d}"
        for name in TABLES:
            assert (d / f"{name}.parquet").is_file() and (d / f"{name}.done.json").is_file(), (t, name)
        assert (d / "model" / "config.json").is_file() and (d / "model.done.json").is_file()
        assert (d / "model" / "tokenizer.json").is_file() and (d / "model" / "trainer_log.json").is_file()
        metrics = json.loads((d / "metrics.json").read_text())
        assert metrics["iteration"] == t and 0.0 <= metrics["eval/accuracy"] <= 1.0
        assert metrics["pairs/count"] > 0 and metrics["generate/count"] == 8  # smoke: 4 prompts x 2 samples
    assert not list(run.glob("iter_*/*.tmp")) and not list(run.glob("iter_*/model.tmp"))
    # keep_models=latest: M1's weights went once iteration 2 had trained from it; M2's stay
    assert not list((run / "iter_01" / "model").glob("*.safetensors"))
    assert json.loads((run / "iter_01" / "model" / "PRUNED.json").read_text())["bytes"] > 0
    assert (run / "iter_02" / "model" / "model.safetensors").is_file()
    assert not (run / "iter_02" / "model" / "PRUNED.json").exists()


def test_datasets_open_with_pandas_and_datasets_with_provenance(reference_run):
    import datasets

    run = reference_run
    gens = _table(run, 1, "generations")
    assert {"iteration", "prompt_id", "sample_idx", "completion", "num_tokens", "finish_reason"} <= set(gens.columns)
    verdicts = _table(run, 1, "judgments")
    assert {"extracted", "status", "reward", "completion", "prompt_id", "sample_idx"} <= set(verdicts.columns)
    assert set(verdicts["status"]) <= {"correct", "incorrect", "unparseable"}
    pairs = datasets.load_dataset("parquet", data_files=str(run / "iter_01" / "pairs.parquet"), split="train")
    row = pairs[0]
    assert {"prompt", "chosen", "rejected", "iteration", "prompt_id", "chosen_reward", "rejected_reward"} <= set(row)
    assert row["prompt"][-1]["role"] == "user" and row["chosen"][0]["role"] == "assistant"
    assert all(p["chosen"][0]["content"] != p["rejected"][0]["content"] for p in pairs)
    # the random tiny model never answers correctly: every chosen side is the gold solution
    assert set(pairs["chosen_sample_idx"]) == {-1}


def test_iteration_t_generates_from_model_t_minus_1(reference_run, tiny_model):
    from stages.modeling import fingerprint, load_model

    run = reference_run
    def stats(t, name):
        return json.loads((run / f"iter_{t:02d}" / f"{name}.done.json").read_text())["stats"]

    g1, g2 = stats(1, "generations")["model_fingerprint"], stats(2, "generations")["model_fingerprint"]
    assert g1 == fingerprint(load_model(tiny_model)) == stats(0, "eval")["model_fingerprint"]
    assert g2 == stats(1, "eval")["model_fingerprint"]  # M1 (its weights are pruned by now: keep_models=latest)
    assert stats(2, "eval")["model_fingerprint"] == fingerprint(load_model(str(run / "iter_02" / "model")))
    assert g1 != g2  # training changed the weights, and iteration 2 sampled from the trained model


def test_wandb_offline_run_holds_iteration_metrics(reference_run):
    files = glob.glob(str(reference_run / "wandb" / "offline-run-*" / "run-*.wandb"))
    assert len(files) == 1
    info = run_info(files[0])
    assert info["group"] and info["project"] == "selfimprove"
    rows = history(files[0])
    iters = {r["iteration"]: r for r in rows if "eval/accuracy" in r}
    assert sorted(iters) == [0, 1, 2]
    for t in (1, 2):
        for key in ("judge/accuracy", "pairs/count", "pairs/skipped_no_loser", "train/loss_last",
                    "train/rewards/margins_mean", "train/logps/chosen_last", "generate/mean_tokens",
                    "generate/seconds", "train/seconds", "eval/accuracy_lenient", "seconds"):
            assert key in iters[t], key
    steps = [r["trainer/step"] for r in rows if "trainer/step" in r and "trainer/loss" in r]
    assert steps == sorted(steps) and len(set(steps)) == len(steps)  # iterations follow, never overlap
    metrics = json.loads((reference_run / "iter_02" / "metrics.json").read_text())
    assert iters[2]["pairs/count"] == metrics["pairs/count"]


def test_inspect_prints_summary_and_pairs(reference_run, env):
    p = subprocess.run([sys.executable, "-m", "pipeline.inspect", str(reference_run), "--pairs", "2"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""  # was bitsandbytes' warning about an optional CPU kernel (on CPUs with AVX512-BF16)
    assert "iter_02: done" in p.stdout and "held-out acc" in p.stdout
    assert p.stdout.count("CHOSEN (gold solution") == 2
    from pipeline.inspect import show_pairs

    assert show_pairs(reference_run, 1, 99) == "no pairs found for iteration 99 (iterations that have them: 1, 2)"


def test_inspect_on_empty_tables_negative_counts_and_an_iteration_folder(tmp_path, capsys):
    """A meta-judge that compared nothing (a small model's judgments, none parseable, as `model=tiny
    method=meta_rewarding` gives) leaves an empty table: `--meta 1` was a KeyError traceback. `--pairs -1` showed all
    pairs but the last; an iteration folder given for the run folder now names the run folder."""
    import pandas as pd

    from pipeline.inspect import main

    it = tmp_path / "run" / "iter_01"
    it.mkdir(parents=True)
    for name in ("meta_judgments", "pairs", "judgments", "refinements", "behaviors"):
        pd.DataFrame().to_parquet(it / f"{name}.parquet")
    for flag in ("--meta", "--pairs", "--judgments", "--refine", "--behaviors"):
        assert main([str(it.parent), flag, "1"]) == 0, flag
        assert capsys.readouterr().out.strip().endswith("iter_01/" + {"--meta": "meta_judgments", "--refine":
                                                        "refinements"}.get(flag, flag[2:]) + ".parquet: no rows")
    with pytest.raises(SystemExit):
        main([str(it.parent), "--pairs", "-1"])
    assert "--pairs: must be an integer >= 0, got '-1'" in capsys.readouterr().err
    assert main([str(it)]) == 2
    assert capsys.readouterr().err.strip() == f"error: {it}: no iteration folders (give the run folder: {it.parent})"


def _kill_when(cmd: list[str], env: dict, ready, timeout: float = 300, stderr: bytearray | None = None) -> None:
    """Run `cmd`, SIGKILL it as soon as `ready()` holds; with `stderr`, what the run writes there is collected into
    it as it comes (for kill points only the progress bars show)."""
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL if stderr is None else subprocess.PIPE)
    if stderr is not None:
        threading.Thread(target=lambda: [stderr.extend(c) for c in iter(lambda: proc.stderr.read1(4096), b"")],
                         daemon=True).start()
    t0 = time.time()
    try:
        while not ready():
            assert proc.poll() is None, "the run ended before the kill point"
            assert time.time() - t0 < timeout, "kill point never reached"
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def test_resume_after_kill_between_stages_matches_uninterrupted(tmp_path, env, reference_run):
    run = tmp_path / "run"
    _kill_when(pipeline_cmd(run, *TINY, "logger=none"), env,
               lambda: (run / "iter_01" / "judgments.done.json").exists())
    assert not (run / "iter_01" / "model.done.json").exists()
    p = run_pipeline(run, *TINY, "logger=none", env=env)
    assert "[iter 2]" in p.stdout
    assert _counts(run) == _counts(reference_run)
    for name in ("generations", "pairs"):  # same seeds: the same datasets
        pd.testing.assert_frame_equal(_table(run, 2, name), _table(reference_run, 2, name))


def test_resume_after_kill_inside_training(tmp_path, env, reference_run):
    run = tmp_path / "run"
    err = bytearray()

    def training_for_a_while():  # iteration 2's DPO between optimizer steps: its progress bar shows k/N, 0 < k < N
        # (a fixed sleep after the stage began raced the tiny model's ~1 s of training on a fast CPU)
        bars = re.findall(rb"iter 2 train \(dpo, \d+ examples\): +\d+%\|[^|]*\| (\d+)/(\d+)", bytes(err))
        return any(0 < int(k) < int(n) for k, n in bars)

    _kill_when(pipeline_cmd(run, *TINY, "logger=none"), env, training_for_a_while, stderr=err)
    assert not (run / "iter_02" / "model").exists() and not (run / "iter_02" / "model.done.json").exists()
    assert (run / "iter_02" / "pairs.done.json").exists()
    assert (run / "iter_01" / "model" / "model.safetensors").exists()  # M1 is still read: not pruned
    run_pipeline(run, *TINY, "logger=none", env=env)
    assert _counts(run) == _counts(reference_run)
    assert not list(run.glob("iter_0*/model.tmp*"))
    assert (run / "iter_01" / "model" / "PRUNED.json").exists() and (run / "iter_02" / "model.done.json").exists()


def test_rerun_of_finished_run_recomputes_nothing(tmp_path, env, seed_sweep):
    run = copy_run(sweep_job(seed_sweep, "seed=0"), tmp_path / "run")  # a finished TINY iterations=1 run
    before = {p: p.stat().st_mtime_ns for p in run.glob("iter_*/*.done.json")}
    p = run_pipeline(run, *TINY, "logger=none", "iterations=1", env=env)
    assert {p: p.stat().st_mtime_ns for p in run.glob("iter_*/*.done.json")} == before
    assert "[iter 1]" in p.stdout  # the summary is still printed, from the stored results
    # asking for one more iteration extends the run instead of redoing it
    run_pipeline(run, *TINY, "logger=none", "iterations=2", env=env)
    assert {p: p.stat().st_mtime_ns for p in before} == before
    assert (run / "iter_02" / "eval.done.json").exists()
    assert (run / "iter_01" / "model" / "PRUNED.json").exists()  # M1 was the latest, read by iteration 2; now not
    # a config change that needs M1 again is refused before anything runs, with the ways out
    p = run_pipeline(run, *TINY, "logger=none", "iterations=2", "eval.max_new_tokens=16", "on_change=recompute",
                     env=env, check=False)
    assert p.returncode != 0 and "iter_01/model: needed again" in p.stderr and "keep_models=all" in p.stderr
    assert not (run / "iter_00" / "eval.done.json").exists()  # forgotten by on_change=recompute, not recomputed


def test_iterations_0_evaluates_a_checkpoint_only(tmp_path, env, reference_run):
    """The evaluation-only run: `iterations=0` with model.name_or_path set to a trained model (here the reference
    run's M2) evaluates it as iteration 0, trains nothing, and gives the held-out numbers of the run that made it."""
    run = tmp_path / "eval-only"
    p = run_pipeline(run, *TINY, "logger=none", "iterations=0",
                     f"model.name_or_path={reference_run / 'iter_02' / 'model'}", env=env)
    assert sorted(d.name for d in run.glob("iter_*")) == ["iter_00"]
    assert not list(run.glob("iter_00/*model*")) and "[iter 0]" in p.stdout and "[iter 1]" not in p.stdout
    got, want = (json.loads((r / f"iter_{t:02d}" / "metrics.json").read_text()) for r, t in ((run, 0), (reference_run, 2)))
    assert got["eval/count"] == want["eval/count"] > 0
    same = ("eval/model_fingerprint", "eval/accuracy", "eval/accuracy_lenient", "eval/mean_tokens", "eval/response_chars")
    assert {k: got[k] for k in same} == {k: want[k] for k in same}  # the same weights, answering the same way
    assert (run / "report" / "heldout.png").is_file()


def test_changed_stage_config_is_refused_then_recomputed_on_request(tmp_path, env, seed_sweep):
    run = copy_run(sweep_job(seed_sweep, "seed=0"), tmp_path / "run")  # a finished TINY iterations=1 run
    old_pairs = (run / "iter_01" / "pairs.done.json").read_text()
    record = {f: (run / ".hydra" / f).read_text() for f in ("config.yaml", "overrides.yaml", "hydra.yaml")}
    p = run_pipeline(run, *TINY, "logger=none", "iterations=1", "pairs.pairs_per_prompt=1", env=env, check=False)
    assert p.returncode != 0
    assert "iter_01/pairs: pairs.pairs_per_prompt: 2 -> 1" in p.stderr
    assert "on_change=recompute" in p.stderr
    assert (run / "iter_01" / "pairs.done.json").read_text() == old_pairs  # nothing was touched
    # ... nor the record of the command that made the run, which the report and inspect read (Hydra used to
    # overwrite it with the refused command's config before the pipeline ran)
    assert {f: (run / ".hydra" / f).read_text() for f in record} == record
    gen_marker = (run / "iter_01" / "generations.done.json").read_text()
    run_pipeline(run, *TINY, "logger=none", "iterations=1", "pairs.pairs_per_prompt=1", "on_change=recompute",
                 env=env)
    assert (run / "iter_01" / "generations.done.json").read_text() == gen_marker  # upstream reused
    assert json.loads((run / "iter_01" / "pairs.done.json").read_text())["count"] == 4  # 4 prompts x K=1
    assert json.loads((run / "iter_01" / "model.done.json").read_text())["count"] == 4  # retrained on them
    assert "pairs.pairs_per_prompt=1" in (run / ".hydra" / "overrides.yaml").read_text()  # the command that made it


def _check_sweep(sweep: Path, jobs_expected: list[str]) -> None:
    """Each job of a sweep has its own finished folder and its own W&B run, in one W&B group."""
    jobs = sorted(d.name for d in sweep.iterdir() if (d / ".hydra").is_dir())  # not the sweep's report/
    assert (sweep / "report" / "report.html").is_file()  # written when the sweep ended (hydra.callbacks)
    assert len(jobs) == len(jobs_expected) and all(e in j for e, j in zip(jobs_expected, jobs)), jobs
    infos = []
    for j in jobs:
        assert (sweep / j / "iter_01" / "eval.done.json").exists()
        files = glob.glob(str(sweep / j / "wandb" / "offline-run-*" / "run-*.wandb"))
        assert len(files) == 1
        infos.append(run_info(files[0]))
    assert infos[0]["group"] == infos[1]["group"] and infos[0]["id"] != infos[1]["id"]
    assert {i["name"] for i in infos} == set(jobs)


def test_seed_sweep_with_the_basic_launcher(seed_sweep):
    """Hydra's basic launcher (one job after the other): the seed sweep the README shows (conftest.seed_sweep)."""
    _check_sweep(seed_sweep, ["seed=0", "seed=1"])


def test_a_sweep_job_with_an_input_error_leaves_the_others_to_finish(tmp_path, env, seed_sweep):
    """A job that stops on an input error at run time (here: its folder is held by another process) prints its one
    line, is marked failed in its folder, and the sweep goes on: the other jobs finish, the report covers them, and
    the sweep exits 2 naming the failed job. Was: Hydra's traceback, the sweep stopped there, no report."""
    import fcntl
    import shutil

    sweep = tmp_path / "sweep"
    shutil.copytree(seed_sweep, sweep, ignore=shutil.ignore_patterns("wandb", "report", ".lock"))
    cmd = pipeline_cmd(tmp_path / "unused", *TINY, "iterations=1", f"hydra.sweep.dir={sweep}", "seed=0,1")
    held = sweep_job(sweep, "seed=0")
    lone = tmp_path / "lone" / held.name  # a sweep of that one job, in a folder with no other run
    lone.mkdir(parents=True)
    with open(held / ".lock", "w") as lock, open(lone / ".lock", "w") as lone_lock:
        for f in (lock, lone_lock):
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as another pipeline process holds it
        p = subprocess.run([*cmd[:3], "-m", *cmd[3:]], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        alone = subprocess.run([*cmd[:3], "-m", *cmd[3:-2], f"hydra.sweep.dir={lone.parent}", "seed=0"], cwd=ROOT,
                               env=env, capture_output=True, text=True, timeout=600)
    # every job failed: its line and the naming line, no "sweep report not written" about the report it cannot have
    assert alone.returncode == 2 and "report" not in alone.stdout, alone.stdout[-4000:]
    assert alone.stderr.strip().splitlines()[-1].startswith("error: 1 of the sweep's jobs stopped"), alone.stderr
    assert p.returncode == 2, p.stderr[-4000:]
    assert "Traceback" not in p.stderr, p.stderr[-4000:]
    assert f"error: sweep job #0 (model=tiny experiment=smoke iterations=1 seed=0): {held} is in use by another " \
        "pipeline process" in p.stderr
    assert p.stderr.strip().splitlines()[-1] == "error: 1 of the sweep's jobs stopped on an input error (printed " \
        f"above; kept in failed.txt in the job's folder): {held.name}. Fix it and rerun the same command: finished " \
        "jobs are read, not recomputed"
    assert "in use" in (held / "failed.txt").read_text()
    report = (sweep / "report" / "report.html").read_text()  # of the job that finished, not the failed one
    assert "seed=1" in report and "seed=0" not in report
    p = subprocess.run([*cmd[:3], "-m", *cmd[3:]], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-4000:]  # the folder is free again: the job runs, and is no longer failed
    assert not (held / "failed.txt").exists() and "seed=0" in (sweep / "report" / "report.html").read_text()


@pytest.mark.parametrize("launcher", [["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
                                      ["hydra/launcher=submitit_local"]], ids=["joblib", "submitit_local"])
def test_multirun_sweep_gives_each_job_its_folder_and_wandb_run(tmp_path, env, launcher):
    """joblib (local parallel jobs) and submitit's local executor (the code path of hydra/launcher=slurm, without a
    cluster)."""
    sweep = tmp_path / "sweep"
    cmd = pipeline_cmd(tmp_path / "unused", *TINY, "iterations=1", f"hydra.sweep.dir={sweep}", "train.beta=0.05,0.1",
                       *launcher)
    p = subprocess.run([*cmd[:3], "-m", *cmd[3:]], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-4000:]
    _check_sweep(sweep, ["train.beta=0.05", "train.beta=0.1"])


@pytest.mark.parametrize("method,extra", [("dpo", []), ("star", ["eval=maj", "eval.maj_k=2"])])
def test_baseline_methods_run_end_to_end(tmp_path, env, method, extra):
    run = tmp_path / "run"
    p = run_pipeline(run, f"method={method}", *TINY, "iterations=1", "logger=none", *extra, env=env)
    assert "[iter 1]" in p.stdout
    cfg = (run / ".hydra" / "config.yaml").read_text()
    assert f"method_name: {method}" in cfg
    marker = json.loads((run / "iter_01" / "model.done.json").read_text())
    assert marker["config"]["train"]["trainer"] == ("sft" if method == "star" else "dpo")
    metrics = json.loads((run / "iter_01" / "metrics.json").read_text())
    if method == "star":
        # the random tiny model is never correct and STaR adds no gold solution: no examples, M1 = M0, no crash
        assert metrics["pairs/count"] == 0 and metrics["train/skipped"] is True and "no training data" in p.stdout
    if extra:
        assert "eval/maj@2" in metrics


def test_a_second_process_on_the_same_run_folder_is_refused(tmp_path, env):
    import fcntl

    run = tmp_path / "run"
    run.mkdir()
    with open(run / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a running pipeline holds it
        p = run_pipeline(run, *TINY, "logger=none", env=env, check=False)
    assert p.returncode == 2 and "in use by another pipeline process" in p.stderr
    assert not (run / "iter_00").exists() and not (run / ".hydra").exists()  # the running one's record is its own
