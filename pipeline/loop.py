"""The iteration loop. Reads like the algorithm, because the stage table (pipeline/graph.py) is in its order:
(optionally fine-tune M0 on seed data,) evaluate M0; then for each iteration t = 1..N: prompts -> generate from
M(t-1) -> judge (-> meta-judge) -> pairs -> train M(t) -> evaluate M(t) -> log. Which prompts, whether the model
thinks first, which judge, whether a meta-judge makes judge pairs and which pairs is config (prompts.source,
thought, judge.kind, meta_judge, pairs.rule), not code. Every step's result is read from the iteration folder when
it is already finished, else computed and written (pipeline/store.py), so rerunning the same command resumes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from pipeline.config import ConfigError
from pipeline.graph import Run, configs_at, plan, runner_configs, stages_at, validate
from pipeline.models import model_problem, resolve_model
from pipeline.report import iteration_metrics, print_summary_line, print_table, record_versions, write_report
from pipeline.runner import Runner, RunnerConfig
from pipeline.store import Store, atomic_write_text
from pipeline.tracking import make_tracker
from stages.generate import python_model
from stages.hints import check_task
from stages.modeling import device_problem
from stages.pairs import no_gold_notice
from stages.self_instruct import load_seed_pool
from stages.tasks import load_task
from stages.vllm_client import VllmOptions, gpu_groups


CHECKED_BY = {"answer": "final answers", "rules": "rules", "program": "running programs"}  # LoadedTask.kind


def check_inputs(cfg: DictConfig) -> list[str]:
    """The starting model, and the task, self-instruct's seed pool and the models named by path or py: callable of
    every planned iteration, checked against what that iteration runs, before any model loads: a schedule may turn
    on majority votes, SEELE's hints or a model judge (or change the task) from a later iteration on, and an
    evaluation-only run (iterations=0) samples no hints and makes no pairs. Returns the notices for the user, each
    once."""
    notices: list[str] = []
    problem = model_problem(cfg.model.name_or_path, cfg.paths.cache_dir)  # converted/loaded after this
    if problem:
        raise ConfigError(f"model.name_or_path: {problem}")
    checked: set[tuple[str, str]] = set()
    runners = runner_configs(cfg)
    planned: set[str] = set()  # the stage groups some iteration runs
    for t in range(cfg.iterations + 1):
        s = configs_at(cfg, t)
        stages = stages_at(t, s)
        planned |= {st.group for st in stages}
        names = {st.name for st in stages}
        task = load_task(s.task)
        checked_by = f"task {task.name} is checked by {CHECKED_BY[task.kind]}"
        if "eval" in names and task.kind != "answer" and "maj" in s.eval.measures:
            raise ConfigError(f"eval.measures: maj votes over final answers; {checked_by}: remove maj")
        if "eval" in names and task.kind != "rules" and "constraints" in s.eval.measures:
            rest = [m for m in s.eval.measures if m != "constraints"]
            raise ConfigError(f"eval.measures: constraints is the share of a prompt's rule-checked constraints met; "
                              f"{checked_by}: remove it (eval.measures=[{','.join(rest)}])")
        if "generations" in names and s.curriculum:
            try:
                check_task(task)                    # SEELE's hints need reference solutions
            except ValueError as e:
                raise ConfigError(str(e)) from None
        if "prompts" in names and s.prompts.source == "self_instruct":
            try:
                load_seed_pool(s.prompts.seed_pool)  # the examples the model writes new instructions from
            except (OSError, ValueError) as e:
                raise ConfigError(str(e)) from None
        if s.generate.backend == "hf" and stages:  # every model call of the iteration (sampling, judges, evaluation)
            problem = device_problem(s.generate.device)
            if problem:
                raise ConfigError(f"generate.device={s.generate.device}: {problem}")
        if s.generate.backend == "vllm":  # every model call of the run goes through vLLM workers on GPUs
            try:
                gpu_groups(VllmOptions.parse(s.generate.vllm))
            except RuntimeError as e:
                raise ConfigError(f"{e} (generate=vllm runs on CUDA GPUs; generate=hf runs anywhere)") from None
        for st, named in ((st, m) for st in stages for m in st.named_models(s, t)):  # graph.py declares them
            if (named.spec, st.group) not in checked:  # a model each planned iteration names, checked once
                checked.add((named.spec, st.group))
                problem = _model_problem(named.spec, runners.get(st.group, RunnerConfig()), cfg.paths.cache_dir)
                if problem:
                    raise ConfigError(f"{named.field}: {problem}")
        notices += task.notices + (no_gold_notice(task, s.pairs) if "pairs" in names else [])
        per = s.task.prompts_per_iteration
        if "prompts" in names and s.prompts.source == "task" and per is not None and per > len(task.train):
            n = len(task.train)
            notices.append(f"task.prompts_per_iteration={per}: the train split has {n} question{'s' * (n != 1)}, so "
                           f"each iteration uses {'all ' * (n != 1)}{n}")
    for group, where in runners.items():  # training always takes this process's GPU when there is one
        if group in planned:
            notices += _processes_notice(group, where, cfg.generate.get("device", "auto") if group == "generate"
                                         else "auto")
    return list(dict.fromkeys(notices))


def _processes_notice(group: str, where: RunnerConfig, device: str) -> list[str]:
    """runner.<group>.nproc against this machine. On GPUs each process takes the GPU of its local rank, so more
    processes than visible GPUs would fail in the stage (an invalid device ordinal, after the models load): refused.
    On the CPU more processes than cores run, each with its own copy of the model on a share of the cores: a notice."""
    if where.nproc == 1:
        return []
    import torch

    from stages.modeling import pick_device

    if pick_device(device).startswith("cuda"):  # where each rank's stage puts its model
        gpus = torch.cuda.device_count()
        if where.nproc > gpus:
            raise ConfigError(f"runner.{group}.nproc={where.nproc}: one process per GPU and {gpus} "
                              f"{'is' if gpus == 1 else 'are'} visible (CUDA_VISIBLE_DEVICES="
                              f"{os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}): at most {gpus}")
        return []
    cores = os.cpu_count() or 1
    if where.nproc <= cores:
        return []
    return [f"runner.{group}.nproc={where.nproc} on {cores} CPU core{'s' * (cores != 1)}: each process holds its own "
            f"copy of the model and they share the cores, so fewer processes finish sooner"]


def _model_problem(spec: str, where: RunnerConfig, cache_dir: str) -> str | None:
    """Why a model named by a path or py:module:function cannot be called (None: it can, or it is a hub id). A py:
    callable is imported where its stage runs: a worker with its own interpreter or environment (runner.<group>.python
    / .env) may be the only one that can import it."""
    if not spec.startswith("py:"):
        return model_problem(spec, cache_dir)
    if where.kind != "inprocess" and (where.python or where.env):
        check = "import sys; from stages.generate import python_model; python_model(sys.argv[1])"
        p = subprocess.run([where.interpreter, "-c", check, spec], capture_output=True, text=True,
                           env=where.environment())
        last = (p.stderr.strip().splitlines() or [f"exit status {p.returncode}"])[-1]
        return None if p.returncode == 0 else last.removeprefix("ValueError: ")
    try:
        python_model(spec)
    except ValueError as e:
        return str(e)
    return None


def run(cfg: DictConfig, run_dir: Path, job_name: str | None = None, overrides: list[str] = (),
        record: dict | None = None) -> list[dict]:
    """`record`: Hydra's files of the command ({file name: config}), written to <run>/.hydra/ once the checks pass."""
    validate(cfg, overrides)                        # bad values fail here, before any model loads
    store = Store(run_dir, plan(cfg))
    store.check(cfg.on_change)                      # stale results: refuse, or forget them
    store.check_pruned()                            # ... and what they need must still be there
    for notice in check_inputs(cfg):                # a bad file, field, option, sandbox or model path too
        print(notice, flush=True)
    m0 = resolve_model(cfg.model.name_or_path, cfg.paths.cache_dir)
    if record:                                      # the command that made (or continues) this run
        (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
        for name, node in record.items():
            atomic_write_text(run_dir / ".hydra" / name, OmegaConf.to_yaml(node))
    record_versions(run_dir)                        # which libraries made these numbers
    tracker = make_tracker(cfg, run_dir, job_name)
    run = Run(cfg, store, Runner(runner_configs(cfg), run_dir), m0, tracker)  # stages here or in own processes
    history: list[dict] = []
    try:
        for t in range(cfg.iterations + 1):         # iteration 0: (bootstrap and) evaluate M0
            for stage in stages_at(t, configs_at(cfg, t)):
                run.step(t, stage)                  # read if finished, else computed and written
                if cfg.keep_models == "latest":
                    store.prune_models()            # weights no later stage reads (the latest model stays)
            history.append(iteration_metrics(store, t))
            store.write_metrics(t, history[-1])
            tracker.log_iteration(t, history[-1])
            if t:
                tracker.log_pairs(t, store.read(t, "pairs"))
            print_summary_line(history[-1])
        print_table(history, run_dir)
        try:                                        # figures of a finished run; everything is computed already
            print(f"Report: {write_report([run_dir], run_dir / 'report')[0]}", flush=True)
        except Exception as e:  # noqa: BLE001  (a plotting failure must not fail the run)
            print(f"report not written: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
    finally:
        tracker.finish()
    return history


class SweepCheck(Callback):
    """Hydra callback (conf/config.yaml): before a sweep (-m) launches its first job, every job's config is
    composed and checked as `run` checks it (validate, check_inputs), so a bad value in the fifth job stops the sweep
    with its one line now, not after four finished jobs. Jobs are expanded as Hydra's basic sweeper expands them
    (the cartesian product of the sweep overrides); another sweeper picks its own values and is left to run."""

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
        from hydra.core.global_hydra import GlobalHydra
        from hydra.core.override_parser.overrides_parser import OverridesParser
        from hydra.errors import HydraException
        from omegaconf.errors import OmegaConfBaseException

        from pipeline import hydra_reports, input_errors
        from pipeline.config import command_line_error

        hydra_reports()  # a joblib or submitit launcher re-raises a job's exception here: Hydra's report of a bug
        if config.hydra.sweeper.get("_target_") != f"{BasicSweeper.__module__}.{BasicSweeper.__name__}":
            return
        loader = GlobalHydra.instance().config_loader()
        params = config.hydra.sweeper.get("params")  # the sweep's values set in the config (Hydra >= 1.2)
        params = [f"{k}={v}" for k, v in OmegaConf.to_container(params).items()] if params else []
        typed = OmegaConf.to_container(config.hydra.overrides.task)  # as typed: `seed=${iterations}` is not resolved
        overrides = OverridesParser.create(config_loader=loader).parse_overrides([*params, *typed])
        for i, job in enumerate(BasicSweeper.split_arguments(overrides, None)[0]):
            try:
                cfg = loader.load_sweep_config(master_config=config, sweep_overrides=job)
                validate(cfg, job)
                check_inputs(cfg)
            except (*input_errors(), HydraException, OmegaConfBaseException) as e:  # Hydra's: a key the job lacks
                line = e if isinstance(e, input_errors()) else command_line_error(e)
                print(f"error: sweep job #{i} ({' '.join(job)}): {line}", file=sys.stderr, flush=True)
                sys.exit(2)
