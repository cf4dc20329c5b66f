"""python -m pipeline [group=option ...] [key=value ...]   (see README.md; --cfg job prints the config)

Examples:
    python -m pipeline                                    # IRPO on the embedded SmolLM2-135M, offline, CPU
    python -m pipeline method=dpo train.beta=0.05         # the DPO-only baseline
    python -m pipeline method=irpo experiment=smoke model=tiny logger=none
    python -m pipeline -m train.beta=0.05,0.1             # a sweep: one folder and one W&B run per job
"""

import sys

from pipeline import hydra_raises, hydra_reports, preload_allocator, quiet_libraries, setup_process

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

    hydra_reports()  # from here on, Hydra reports as it always did (cli)
    setup_process()  # again: a joblib or submitit job runs in a process of the launcher's
    quiet_libraries()
    hc = HydraConfig.get()
    multirun = hc.mode.name == "MULTIRUN"
    run_dir = Path(hc.runtime.output_dir)
    overrides = OmegaConf.to_container(hc.overrides.task)  # as typed: `seed=${iterations}` is text, not resolved
    record = {"config.yaml": cfg, "hydra.yaml": OmegaConf.create({"hydra": hc}), "overrides.yaml": hc.overrides.task}
    try:
        run(cfg, run_dir, job_name=hc.job.override_dirname if multirun else None, overrides=overrides, record=record)
    except input_errors() as e:
        if not multirun:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        # a sweep goes on with its other jobs; the sweep's end names this one and exits 2 (report.SweepReport)
        print(f"error: sweep job #{hc.job.num} ({' '.join(overrides)}): {e}", file=sys.stderr, flush=True)
        mark_failed(run_dir, str(e))
    else:
        if multirun:
            mark_failed(run_dir, None)


def cli() -> None:
    """`main`, with Hydra's errors about the command line (`method=bogus`, `train.betaa=0.1`, `iterations=[1`,
    `hydra.run.dir=${nope}`) as one `error:` line and exit status 2, as the pipeline's own input errors are: Hydra
    prints them over several lines (its config search path, a group's options one per line), exit 1. Until the job
    starts, Hydra raises them to here instead of printing them (`pipeline.hydra_raises`); a user's own
    HYDRA_FULL_ERROR=1 still gets Hydra's full trace."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    if not hydra_raises():
        return main()
    try:
        main()
    except (HydraException, OmegaConfBaseException) as e:
        print(f"error: {pipeline.config.command_line_error(e)}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    cli()
