"""Shared fixtures: a model cache for the whole session, and a runner for `python -m pipeline` in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ["model=tiny", "experiment=smoke"]


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """Converted/built models, shared by every test of the session (SELFIMPROVE_CACHE wins if set)."""
    env = os.environ.get("SELFIMPROVE_CACHE")
    return Path(env) if env else tmp_path_factory.mktemp("model-cache")


@pytest.fixture(scope="session")
def env(cache_dir) -> dict:
    e = dict(os.environ)
    e.update({"SELFIMPROVE_CACHE": str(cache_dir), "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1",
              "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1", "WANDB_SILENT": "true"})
    return e


def compose_config(*overrides: str):
    """The composed config of `python -m pipeline <overrides>`, for running `pipeline.loop.run` in-process."""
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="conf", version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def pipeline_cmd(run_dir: Path, *overrides: str) -> list[str]:
    return [sys.executable, "-m", "pipeline", f"hydra.run.dir={run_dir}", *overrides]


def run_pipeline(run_dir: Path, *overrides: str, env: dict, timeout: int = 600, check: bool = True):
    p = subprocess.run(pipeline_cmd(run_dir, *overrides), cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"pipeline failed ({p.returncode}):\nSTDOUT:\n{p.stdout[-4000:]}\nSTDERR:\n{p.stderr[-6000:]}")
    assert "report not written" not in p.stderr, p.stderr[-4000:]  # every finished run writes its report
    return p


@pytest.fixture(scope="session")
def tiny_model(cache_dir) -> str:
    from pipeline.models import resolve_model

    return resolve_model("tiny:llama", cache_dir)


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory, env) -> Path:
    """One uninterrupted two-iteration run on the tiny model with W&B offline, shared by the tests that compare
    against it (resume, stages as processes)."""
    run = tmp_path_factory.mktemp("ref") / "run"
    p = run_pipeline(run, *TINY, env=env)
    assert "Held-out accuracy per iteration" in p.stdout
    assert "[iter 1]" in p.stdout and "[iter 2]" in p.stdout
    return run


def copy_run(src: Path, dst: Path) -> Path:
    """A copy of a finished run folder to continue from (without its W&B files and report): a rerun of the same
    command finds every stage finished, which saves tests a run of their own."""
    import shutil

    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("wandb", "report", ".lock"))
    return dst


def sweep_job(sweep: Path, override: str) -> Path:
    """The folder of a sweep's job (named by all its overrides, e.g. `...,model=tiny,seed=0`)."""
    return next(d for d in sweep.iterdir() if d.name.split(",")[-1] == override or d.name == override)


@pytest.fixture(scope="session")
def seed_sweep(tmp_path_factory, env) -> Path:
    """Two seeds of the tiny smoke setting, one iteration each, as the README's seed sweep (`-m seed=0,1`); job
    seed=0 is also the finished `TINY iterations=1` run that tests continue from (copy_run)."""
    sweep = tmp_path_factory.mktemp("seeds") / "sweep"
    cmd = pipeline_cmd(sweep.parent / "unused", *TINY, "iterations=1", f"hydra.sweep.dir={sweep}", "seed=0,1")
    p = subprocess.run([*cmd[:3], "-m", *cmd[3:]], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-4000:]
    return sweep


def run_in_process(run_dir: Path, cache_dir, *overrides: str):
    """`pipeline.loop.run` of a one-iteration TINY run in this process (no interpreter start-up: the fast way to
    run a whole iteration)."""
    from pipeline.loop import run

    return run(compose_config(*overrides, *TINY, "iterations=1", f"paths.cache_dir={cache_dir}"), run_dir)


def run_crashing(run_dir: Path, cache_dir, monkeypatch, call: str, *overrides: str) -> None:
    """`run_in_process`, killed (KeyboardInterrupt) when the generate call whose progress label starts with `call`
    begins."""
    import stages.generate as generate_mod

    real = generate_mod.generate

    def crash(model_path, prompts, cfg, desc="generate", **kw):
        if desc.startswith(call):
            raise KeyboardInterrupt(f"killed in {call}")
        return real(model_path, prompts, cfg, desc, **kw)

    with monkeypatch.context() as m:
        m.setattr(generate_mod, "generate", crash)
        with pytest.raises(KeyboardInterrupt):
            run_in_process(run_dir, cache_dir, *overrides)
