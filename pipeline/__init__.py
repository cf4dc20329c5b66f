"""Orchestration: the Hydra entry (`python -m pipeline`), the iteration loop, the artifact store, tracking, and the
runner that puts a stage in its own process(es)."""


JEMALLOC = "libjemalloc.so.2"
# jemalloc keeps the pages it frees for reuse instead of handing them back after its 10 s decay (the pipeline purges
# them after each model stage): with the decay, iteration 1's DPO took 1.5x as long, without it as long as glibc's
JEMALLOC_CONF = "dirty_decay_ms:-1,muzzy_decay_ms:-1"


def find_jemalloc() -> str | None:
    """jemalloc's shared library: this environment's own (``conda install jemalloc``), else the system's (Debian and
    Ubuntu: ``apt-get install libjemalloc2``; Fedora: ``dnf install jemalloc``); None when it is not installed."""
    import platform
    import sys
    from pathlib import Path

    dirs = [Path(sys.prefix) / "lib", Path(f"/usr/lib/{platform.machine()}-linux-gnu"), Path("/usr/lib64"),
            Path("/usr/lib"), Path("/usr/local/lib")]
    return next((str(d / JEMALLOC) for d in dirs if (d / JEMALLOC).is_file()), None)


def preload_allocator() -> None:
    """With ``SELFIMPROVE_MALLOC=jemalloc``, run this command with jemalloc as its memory allocator instead of the C
    library's malloc (``system``, the default).

    Why: glibc's malloc serves the 1-8 MiB blocks torch allocates and frees on every training step from a heap that
    fragments and keeps the holes; jemalloc's size-class arenas reuse them. Its page decay is turned off (unless
    ``MALLOC_CONF`` is set) because handing pages back between training steps made every step fault them in again
    (iteration 1's DPO 452-512 s against glibc's 312-331 s); instead the pipeline purges jemalloc's arenas after
    each model stage (stages/modeling.py ``release_memory``). Measured 2026-12-03 on the 2-core machine (README,
    "Memory and disk", one seed): the default job peaked at 3.62 GB against 4.15 GB, in 822 s against 861 s, with
    the same held-out numbers. Not the default because jemalloc is a C library no PyPI wheel ships (Debian/Ubuntu:
    ``apt-get install libjemalloc2``). The allocator is fixed when a process starts (the dynamic loader reads
    ``LD_PRELOAD``), so this re-executes the same command line once with it set, before anything is imported or
    computed; worker processes inherit it (the code sandbox clears its environment)."""
    import os
    import sys

    choice = os.environ.get("SELFIMPROVE_MALLOC", "system")
    if choice not in ("system", "jemalloc"):
        sys.exit(f"error: SELFIMPROVE_MALLOC={choice!r}: use system (the C library's malloc, the default) or jemalloc")
    preload = os.environ.get("LD_PRELOAD", "")
    if choice == "system" or "jemalloc" in preload:
        return
    lib = find_jemalloc() if sys.platform == "linux" else None
    if lib is None:
        sys.exit(f"error: SELFIMPROVE_MALLOC=jemalloc but {JEMALLOC} is not installed (Debian/Ubuntu: apt-get install "
                 "libjemalloc2; conda: conda install jemalloc), or unset SELFIMPROVE_MALLOC")
    os.environ["LD_PRELOAD"] = f"{lib}:{preload}" if preload else lib
    os.environ.setdefault("MALLOC_CONF", JEMALLOC_CONF)
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
    # bitsandbytes (imported by peft) warns on CPU about an optional kernels package that 4-bit training does not need
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)


def quiet_libraries() -> None:
    """Keep the console to the pipeline's own progress bars and summaries: no per-file loading bars."""
    import logging

    import datasets
    import transformers

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    logging.getLogger("matplotlib").setLevel(logging.WARNING)  # Hydra logs INFO; matplotlib's font-cache notice
