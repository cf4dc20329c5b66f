"""The cost of one iteration of the default job: wall time per stage, orchestration overhead, peak memory.

    python benchmarks/bench_iteration.py                     # the default job (IRPO, embedded SmolLM2-135M), 1 iteration
    python benchmarks/bench_iteration.py model=tiny experiment=smoke      # any pipeline overrides

Runs the pipeline in this process (`pipeline.loop.run`, the code `python -m pipeline` runs) on a fresh run
folder with W&B offline, evaluating M0 and training one iteration. Compute is timed where it happens:
decoding (``stages.generate.decode``, and ``model.generate`` if anything calls it: generation, evaluation
and any LLM judge), building the DPOTrainer (tokenizing, the precomputed reference log-probs) and ``Trainer.train`` (DPO) and the answer checker
(judging); everything else — start-up, config, model loading and saving, tokenizing, datasets, markers,
W&B, the summary — is orchestration overhead. Peak memory is this process's peak resident set size.
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
from pathlib import Path

import common  # noqa: F401
from common import header, time_calls, time_dpo

TIMED: dict[str, float] = {}


def main() -> None:
    overrides = sys.argv[1:]
    bad = [a for a in overrides if "=" not in a.lstrip("+~")]
    if bad:
        sys.exit(f"bench_iteration.py: arguments are pipeline overrides (key=value, e.g. model=tiny), got {bad[0]!r}")
    t_start = time.perf_counter()
    from hydra import compose, initialize_config_module

    import pipeline.loop
    import stages.tasks
    from pipeline import quiet_libraries, setup_process

    setup_process()
    quiet_libraries()
    from transformers.generation.utils import GenerationMixin

    import stages.generate

    bucket = "generate (decoding: sampling, evaluation, judges)"
    time_calls(stages.generate, "decode", TIMED, bucket)  # the stage's decoding loop
    time_calls(GenerationMixin, "generate", TIMED, bucket)  # and transformers' generate, wherever it is called
    time_dpo(TIMED, "train (DPOTrainer init incl. reference log-probs, Trainer.train)")
    time_calls(stages.tasks.LoadedTask, "check", TIMED, "judge (answer checks)")  # every check: judging, evaluation
    from hydra.errors import HydraException

    from pipeline import input_errors
    from pipeline.config import command_line_error

    try:
        with initialize_config_module(config_module="conf", version_base="1.3"):
            cfg = compose(config_name="config", overrides=["iterations=1", "logger.mode=offline", *overrides])
    except HydraException as e:  # Hydra's message on one line, as python -m pipeline prints it
        sys.exit(f"error: {command_line_error(e)}")
    header("one iteration of the default job", "python benchmarks/bench_iteration.py " + " ".join(overrides),
           f"{cfg.method_name} on {cfg.model.name_or_path}, task {cfg.task.name}: M0 evaluation + 1 iteration")
    with tempfile.TemporaryDirectory() as d:
        run_dir = Path(d) / "run"
        t0 = time.perf_counter()
        try:
            pipeline.loop.run(cfg, run_dir)
        except input_errors() as e:
            sys.exit(f"error: {e}")
        wall = time.perf_counter() - t0
        import json

        markers = {p.name[:-len(".done.json")] + f" (iter {p.parent.name[-2:]})": json.loads(p.read_text())["seconds"]
                   for p in sorted(run_dir.glob("iter_*/*.done.json"))}
    total = time.perf_counter() - t_start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("\nstage wall times (from the completion markers):")
    for k, v in markers.items():
        print(f"  {k:28s} {v:8.1f} s")
    compute = sum(TIMED.values())
    print(f"\nwall time of the run: {wall:.1f} s (with imports and config: {total:.1f} s)")
    for k, v in TIMED.items():
        print(f"  {k:55s} {v:8.1f} s  {100 * v / total:5.1f}%")
    print(f"  {'orchestration overhead (everything else)':55s} {total - compute:8.1f} s  "
          f"{100 * (total - compute) / total:5.1f}%")
    print(f"peak resident memory: {peak:.0f} MB")


if __name__ == "__main__":
    main()
