"""Orchestration: the Hydra entry (`python -m pipeline`), the iteration loop, the artifact store, tracking, and the
runner that puts a stage in its own process(es)."""


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
