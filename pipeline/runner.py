"""Where a stage runs: in this process (the default), in a subprocess, or as N processes under torchrun or
accelerate launch — the same stage function, stage config and records either way.

    runner.train.kind=torchrun runner.train.nproc=2          # DPO with 2 processes (gloo on CPU, NCCL on GPUs)
    runner.generate.kind=torchrun runner.generate.nproc=4    # data-parallel generation, shards merged in order
    runner.train.kind=accelerate runner.train.nproc=8 \\
        runner.train.accelerate_config=$(python -m pipeline.runner --accelerate-config zero3)   # DeepSpeed ZeRO-3

Out of process, the call is written into a job folder in the iteration folder — ``iter_01/train.<id>.job/``
holding ``job.json`` (the stage function, its resolved stage config as plain fields, the other arguments) and
one ``<argument>.jsonl`` per list of records — and ``python -m pipeline.runner <job folder>`` runs it on each
rank: it rebuilds the arguments (no Hydra in worker ranks), calls the function and writes
``result.<rank>.json``. A stage function with a ``shard=(rank, world_size)`` parameter (generation) works on its
share of the inputs on every rank and the parts are merged in input order; any other (training) runs on every
rank in lockstep and rank 0's result is the stage's. The workers' output is shown and kept in
``iter_XX/<stage>.log``. A worker stopped by the user's input (a config value, a task file, training data)
hands its exception back and the pipeline raises it as in process; any other failed worker fails the stage with
its exit status and the log's tail. Either way nothing reaches the store (a rerun computes the stage again), and
the job folder is left for debugging until the next run starts: ``python -m pipeline.runner <job folder>`` reruns
it by hand.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import json
import os
import shutil
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

KINDS = ("inprocess", "subprocess", "torchrun", "accelerate")
MULTI_PROCESS = ("generate", "train")  # stages that split their work over nproc > 1 processes
ACCELERATE_CONFIGS = Path(__file__).parent / "accelerate"


@dataclass
class RunnerConfig:
    kind: str = "inprocess"  # inprocess | subprocess | torchrun | accelerate
    nproc: int = 1  # processes (torchrun / accelerate): data-parallel generation; DDP / FSDP / ZeRO training
    python: str = ""  # the workers' interpreter ("" = this one); it needs this project installed
    accelerate_config: str = ""  # accelerate launch --config_file: DeepSpeed ZeRO-3, FSDP, mixed precision...
    env: dict = field(default_factory=dict)  # extra environment variables for the workers

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {list(KINDS)}, got {self.kind!r}")
        if not isinstance(self.nproc, int) or self.nproc < 1:
            raise ValueError(f"nproc must be an integer >= 1, got {self.nproc!r}")
        if self.nproc > 1 and self.kind not in ("torchrun", "accelerate"):
            raise ValueError(f"nproc={self.nproc} needs kind=torchrun or kind=accelerate, not {self.kind!r}")
        if self.kind == "accelerate" and self.nproc > 1 and not self.accelerate_config:
            import torch

            if not torch.cuda.is_available():
                raise ValueError("kind=accelerate with nproc > 1 launches one process per GPU and no GPU is visible "
                                 "(accelerate's multi-CPU launch needs mpirun): use kind=torchrun on CPU")
        if self.accelerate_config and self.kind != "accelerate":
            raise ValueError("accelerate_config is used with kind=accelerate only")
        if self.accelerate_config and not Path(self.accelerate_config).expanduser().is_file():
            raise ValueError(f"accelerate_config: no such file {self.accelerate_config}")
        if self.python and not shutil.which(self.python):
            raise ValueError(f"python: no interpreter {self.python!r}")

    @property
    def interpreter(self) -> str:
        return self.python or sys.executable

    def environment(self) -> dict[str, str]:
        """The workers' environment: this process's, with `env` on top."""
        return {**os.environ, **{k: str(v) for k, v in self.env.items()}}


def runner_configs(values: dict, stages: tuple[str, ...]) -> dict[str, RunnerConfig]:
    """The `runner` config node as {stage group: RunnerConfig}; `stages`: the groups that may run as processes
    (pipeline/graph.py). ValueError names the key."""
    out = {}
    for stage, v in (values or {}).items():
        if stage not in stages:
            raise ValueError(f"runner.{stage}: not a stage that can run as a process (stages: {list(stages)})")
        try:
            out[stage] = RunnerConfig(**(v or {}))
        except (TypeError, ValueError) as e:
            raise ValueError(f"runner.{stage}: {e}") from None
        if out[stage].nproc > 1 and stage not in MULTI_PROCESS:
            raise ValueError(f"runner.{stage}.nproc={out[stage].nproc}: only {list(MULTI_PROCESS)} split their "
                             "work over several processes")
    return out


class Runner:
    """Calls stage functions as the `runner` config says, for the stages of one run folder."""

    def __init__(self, configs: dict[str, RunnerConfig], run_dir: str | Path):
        self.configs, self.run_dir = configs, Path(run_dir)

    def in_process(self, stage: str) -> bool:
        return self.configs.get(stage, RunnerConfig()).kind == "inprocess"

    def __call__(self, stage: str, t: int, fn: Callable, merge: Callable | None = None, **kwargs):
        """fn(**kwargs), here or in worker processes. `merge(kwargs, [result of each rank])` joins the parts of a
        function that takes `shard`."""
        rc = self.configs.get(stage, RunnerConfig())
        if rc.kind == "inprocess":
            return fn(**kwargs)
        sharded = rc.nproc > 1 and "shard" in inspect.signature(fn).parameters
        iter_dir = self.run_dir / f"iter_{t:02d}"
        job = iter_dir / f"{stage}.{uuid.uuid4().hex[:8]}.job"
        job.mkdir(parents=True)
        spec = {"stage": f"iter_{t:02d}/{stage}", "function": f"{fn.__module__}:{fn.__qualname__}",
                "sharded": sharded, "kwargs": encode_call(kwargs, job)}
        _write_json(job / "job.json", spec)
        env = rc.environment()
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // rc.nproc)))
        from stages.process import WorkerError, run_workers

        try:
            run_workers([(command(rc, job), env, iter_dir / f"{stage}.log")], what=f"stage {spec['stage']}")
        except WorkerError:
            _raise_input_error(job)
            raise
        ranks = range(rc.nproc) if sharded else [0]
        missing = [r for r in ranks if not (job / f"result.{r}.json").is_file()]
        if missing:
            raise RuntimeError(f"stage {spec['stage']}: worker exited without a result for rank(s) {missing} "
                               f"(job folder kept: {job})")
        results = [decode(json.loads((job / f"result.{r}.json").read_text()), job) for r in ranks]
        shutil.rmtree(job, ignore_errors=True)
        return merge(kwargs, results) if sharded else results[0]


def _raise_input_error(job: Path) -> None:
    """A worker that stopped on the user's input (pipeline.input_errors: a config value, a task file, training
    data) left its exception in ``error.<rank>.json``: raise it here as itself, the same line as in process."""
    from pipeline import input_errors

    for path in sorted(job.glob("error.*.json")):
        error = json.loads(path.read_text())
        cls = _import(error["type"])
        if isinstance(cls, type) and issubclass(cls, input_errors()):
            raise cls(error["message"]) from None


def command(rc: RunnerConfig, job: Path) -> list[str]:
    python = rc.interpreter
    worker = ["-m", "pipeline.runner", str(job)]
    if rc.kind == "subprocess":
        return [python, *worker]
    if rc.kind == "torchrun":
        return [python, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={rc.nproc}", *worker]
    config = ["--config_file", str(Path(rc.accelerate_config).expanduser())] if rc.accelerate_config else \
        ["--multi_gpu"] if rc.nproc > 1 else []
    return [python, "-m", "accelerate.commands.launch", *config, f"--num_processes={rc.nproc}", *worker]


# --------------------------------------------------------------------------- arguments as files


def encode(value, job: Path, name: str, files: bool = True):
    """JSON-able form of a stage argument or result: dataclass configs by class and fields; a list of records
    (at the top level, `files`) to ``<name>.jsonl`` in the job folder."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        cls = type(value)
        return {"__dataclass__": f"{cls.__module__}:{cls.__qualname__}",
                "fields": {f.name: encode(getattr(value, f.name), job, name, False) for f in
                           dataclasses.fields(value) if f.init}}
    if files and isinstance(value, list) and value and all(isinstance(r, dict) for r in value):
        path = job / f"{name}.jsonl"
        with open(path, "w") as f:
            for r in value:
                f.write(json.dumps(r) + "\n")
        return {"__records__": path.name}
    if isinstance(value, dict):
        return {k: encode(v, job, name, False) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode(v, job, name, False) for v in value]
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"{name}: a {type(value).__name__} cannot be handed to a worker process")


def encode_call(values: dict | tuple | list, job: Path, prefix: str = ""):
    """Keyword arguments ({name: value}) or a result (a tuple of values, or one value), each list of records
    in its own file."""
    if isinstance(values, dict) and not prefix:
        return {k: encode(v, job, k) for k, v in values.items()}
    if isinstance(values, (tuple, list)) and not (values and all(isinstance(r, dict) for r in values)):
        return [encode(v, job, f"{prefix}{i}") for i, v in enumerate(values)]
    return encode(values, job, prefix.rstrip("."))


def decode(value, job: Path):
    if isinstance(value, dict) and "__dataclass__" in value:
        return _import(value["__dataclass__"])(**{k: decode(v, job) for k, v in value["fields"].items()})
    if isinstance(value, dict) and "__records__" in value:
        with open(job / value["__records__"]) as f:
            return [json.loads(line) for line in f]
    if isinstance(value, dict):
        return {k: decode(v, job) for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v, job) for v in value]
    return value


def _import(spec: str):
    module, _, qualname = spec.partition(":")
    obj = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _write_json(path: Path, obj) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


# --------------------------------------------------------------------------- the worker


def work(job: Path) -> None:
    """Run the call saved in `job` on this rank and write its result (rank 0 only unless sharded)."""
    spec = json.loads((job / "job.json").read_text())
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    kwargs = decode(spec["kwargs"], job)
    if spec["sharded"]:
        kwargs["shard"] = (rank, world)
    (job / f"worker.{rank}.pid").write_text(str(os.getpid()))
    try:
        result = _import(spec["function"])(**kwargs)
    except Exception as e:  # for the pipeline to raise again if it is an input error (_raise_input_error)
        _write_json(job / f"error.{rank}.json", {"type": f"{type(e).__module__}:{type(e).__qualname__}",
                                                 "message": str(e)})
        raise
    if spec["sharded"] or rank == 0:
        _write_json(job / f"result.{rank}.json", encode_call(result, job, f"result.{rank}."))
    _close_process_group()


def _close_process_group() -> None:
    """Close the process group a stage opened (under torchrun, accelerate's state for training): torch warns at exit
    otherwise ("destroy_process_group() was not called", NCCL on GPUs). Only after the stage returned: after an
    error another rank may be stuck in a collective, and the process ends anyway."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 2 and argv[0] == "--accelerate-config":  # the path of a shipped accelerate config
        path = ACCELERATE_CONFIGS / f"{argv[1]}.yaml"
        if not path.is_file():
            sys.exit(f"no accelerate config {argv[1]!r}; shipped: {sorted(p.stem for p in ACCELERATE_CONFIGS.glob('*.yaml'))}")
        print(path)
        return
    if len(argv) != 1 or not (Path(argv[0]) / "job.json").is_file():
        sys.exit("usage: python -m pipeline.runner <job folder with job.json> | --accelerate-config <name>")
    from pipeline import quiet_libraries, setup_process

    setup_process()
    quiet_libraries()
    work(Path(argv[0]))


if __name__ == "__main__":
    main()
