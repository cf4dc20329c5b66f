"""Orchestration: the Hydra entry (`python -m pipeline`), the iteration loop, the artifact store, tracking, and the
runner that puts a stage in its own process(es)."""


MIMALLOC = "libmimalloc.so.3"


def find_mimalloc() -> str | None:
    """mimalloc's shared library, from the ``cmeel-mimalloc`` wheel (a dependency on Linux); None where it is not
    installed."""
    from importlib.metadata import PackageNotFoundError, files

    try:
        paths = [f.locate() for f in files("cmeel-mimalloc") or [] if f.name == MIMALLOC]
    except PackageNotFoundError:
        return None
    return next((str(path) for path in paths if path.is_file()), None)


def mimalloc_preload() -> str | None:
    """``LD_PRELOAD`` with mimalloc put first (ahead of anything already preloaded), for a process to start on it;
    None where its wheel is not installed."""
    import os

    lib = find_mimalloc()
    if lib is None:
        return None
    preload = os.environ.get("LD_PRELOAD", "")
    return f"{lib}:{preload}" if preload else lib


def preload_allocator() -> None:
    """Run this command with mimalloc as its memory allocator (``SELFIMPROVE_MALLOC=mimalloc``, the default where
    its wheel is installed) instead of the C library's malloc (``SELFIMPROVE_MALLOC=system``).

    Why: glibc's malloc serves the 1-8 MiB blocks torch allocates and frees on every training step from a heap that
    fragments and keeps the holes, so the process grows stage after stage; mimalloc reuses them and hands pages it
    has not reused for a second back to the system (its ``purge_delay``), and the pipeline also collects its free
    pages after each model stage (stages/modeling.py ``release_memory``). Measured 2026-12-03 on the 2-core machine
    (README, "Memory and disk"): the default job peaked at 3.52 GB against glibc's 4.35 GB, with the same held-out
    numbers (the allocator moves no float) and wall times within the machine's day-to-day noise. jemalloc did about
    as well (3.62 GB) but no PyPI wheel ships it; mimalloc comes in a 0.5 MB wheel (``cmeel-mimalloc``).
    The allocator is fixed when a process starts (the dynamic loader reads ``LD_PRELOAD``), so this re-executes the
    same command line once with it set, before anything is imported or computed; worker processes inherit it (the
    code sandbox clears its environment)."""
    import os
    import sys

    choice = os.environ.get("SELFIMPROVE_MALLOC", "")
    if choice not in ("", "mimalloc", "system"):
        sys.exit(f"error: SELFIMPROVE_MALLOC={choice!r}: use mimalloc (the default) or system (the C library's malloc)")
    if choice == "system" or sys.platform != "linux":
        return
    with open("/proc/self/maps") as maps:
        if "libmimalloc" in maps.read():  # already on it: the restarted process, or a parent's LD_PRELOAD
            return
    preload = mimalloc_preload()
    if preload is None:
        if choice:
            sys.exit("error: SELFIMPROVE_MALLOC=mimalloc but its library is not installed (pip install cmeel-mimalloc), "
                     "or set SELFIMPROVE_MALLOC=system")
        return  # the default where the wheel is missing: the C library's malloc
    os.environ["LD_PRELOAD"] = preload
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])


def setup_process() -> None:
    """Environment and library settings every pipeline process starts with (the CLI and each worker)."""
    import logging
    import os
    import warnings

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("WANDB_SILENT", "true")
    warnings.filterwarnings("ignore", category=FutureWarning)  # library deprecation notices, not the user's business
    # bitsandbytes (imported by peft) warns on CPU about an optional kernels package that 4-bit training does not need;
    # with transformers >= 5.25 that package is installed and, offline, warns that it skips a trust check for it
    for name in ("bitsandbytes", "kernels"):
        logging.getLogger(name).setLevel(logging.ERROR)


_HYDRA_RAISES = False  # HYDRA_FULL_ERROR=1 is ours (hydra_raises), not the user's


def hydra_raises() -> bool:
    """Have Hydra raise its errors about the command line to the caller instead of printing them over several lines
    (HYDRA_FULL_ERROR=1, Hydra's public switch; `pipeline.__main__.cli` prints them as one line). False, changing
    nothing, where the user set HYDRA_FULL_ERROR=1: they get Hydra's full trace."""
    global _HYDRA_RAISES
    import os

    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        return False
    os.environ["HYDRA_FULL_ERROR"] = "1"
    _HYDRA_RAISES = True
    return True


def hydra_reports() -> None:
    """Hydra reports errors as it always does from here on; called once the command line is checked: a job starting
    (pipeline.__main__.main) and a sweep about to launch its jobs (loop.SweepCheck; a joblib or submitit launcher
    re-raises a job's exception in its own process, where the job's `main` never runs)."""
    global _HYDRA_RAISES
    import os

    if _HYDRA_RAISES:
        os.environ.pop("HYDRA_FULL_ERROR", None)
        _HYDRA_RAISES = False


def quiet_libraries() -> None:
    """Keep the console to the pipeline's own progress bars and summaries: no per-file loading bars."""
    import logging

    import datasets
    import transformers

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    logging.getLogger("matplotlib").setLevel(logging.WARNING)  # Hydra logs INFO; matplotlib's font-cache notice


def input_errors() -> tuple[type[Exception], ...]:
    """The exceptions that mean the user's input is wrong, not the code: `python -m pipeline` prints them as one
    `error:` line (exit status 2), and a stage's worker process hands them back to the pipeline as themselves
    (pipeline/runner.py). Anything else is a bug, and its traceback is shown (a bare KeyError used to be printed as
    `error: completion`)."""
    from pipeline.config import ConfigError
    from pipeline.store import RunInUseError, StaleStageError
    from stages.tasks import TaskInputError
    from stages.train import TrainDataError

    return (ConfigError, TaskInputError, TrainDataError, StaleStageError, RunInUseError, FileNotFoundError)
