"""python -m pipeline [group=option ...] [key=value ...]   (see README.md; --cfg job prints the config)

Examples:
    python -m pipeline                                    # IRPO on the embedded SmolLM2-135M, offline, CPU
    python -m pipeline method=dpo train.beta=0.05         # the DPO-only baseline
    python -m pipeline method=irpo experiment=smoke model=tiny logger=none
    python -m pipeline -m train.beta=0.05,0.1             # a sweep: one folder and one W&B run per job
"""

import sys

from pipeline import preload_allocator, quiet_libraries, setup_process

preload_allocator()  # re-executes this command line once on mimalloc (SELFIMPROVE_MALLOC), before any work
setup_process()

import hydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

import pipeline.config  # noqa: E402,F401  (registers the ${basename:...} resolver)


@hydra.main(version_base="1.3", config_path="pkg://conf", config_name="config")
def main(cfg: DictConfig) -> None:
    from pathlib import Path

    from pipeline import input_errors
    from pipeline.loop import run
    from pipeline.report import mark_failed

    quiet_libraries()
    hc = HydraConfig.get()
    multirun = hc.mode.name == "MULTIRUN"
    run_dir = Path(hc.runtime.output_dir)
    record = {"config.yaml": cfg, "hydra.yaml": OmegaConf.create({"hydra": hc}), "overrides.yaml": hc.overrides.task}
    try:
        run(cfg, run_dir, job_name=hc.job.override_dirname if multirun else None, overrides=list(hc.overrides.task),
            record=record)
    except input_errors() as e:
        if not multirun:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        # a sweep goes on with its other jobs; the sweep's end names this one and exits 2 (report.SweepReport)
        print(f"error: sweep job #{hc.job.num} ({' '.join(hc.overrides.task)}): {e}", file=sys.stderr, flush=True)
        mark_failed(run_dir, str(e))
    else:
        if multirun:
            mark_failed(run_dir, None)


if __name__ == "__main__":
    main()
