"""Inspect a run folder: what finished, per-iteration metrics, and sample pairs.

    python -m pipeline.inspect outputs/irpo-smollm2-135m-instruct-arithmetic
    python -m pipeline.inspect <run dir> --pairs 3 --iteration 2     # show 3 pairs of iteration 2

Every table in an iteration folder is a Parquet file: open it with pandas or datasets directly, e.g.
    pandas.read_parquet("<run>/iter_01/pairs.parquet")
    datasets.load_dataset("parquet", data_files="<run>/iter_01/generations.parquet", split="train")
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path

from pipeline.report import STAGES, format_table


def _clip(text: str, width: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 3] + "..."


def summary(run_dir: Path) -> str:
    iters = sorted(p for p in run_dir.glob("iter_*") if p.is_dir())
    if not iters:
        raise FileNotFoundError(f"{run_dir}: no iteration folders (is this a run folder?)")
    lines = [f"Run: {run_dir.resolve()}", ""]
    history = []
    for d in iters:
        done = []
        for name in STAGES:
            mk = d / f"{name}.done.json"
            if mk.exists():
                m = json.loads(mk.read_text())
                done.append(f"{name}({m['count']}, {m['seconds']:.0f}s)")
        pending = [n for n in STAGES if not (d / f"{n}.done.json").exists()] if d.name != "iter_00" else []
        lines.append(f"{d.name}: done " + (", ".join(done) or "-") + (f"; not done: {', '.join(pending)}" if pending
                                                                       else ""))
        if (d / "metrics.json").exists():
            history.append(json.loads((d / "metrics.json").read_text()))
    if history:
        lines += ["", format_table(history)]
    return "\n".join(lines)


def show_pairs(run_dir: Path, n: int, iteration: int | None, width: int = 300) -> str:
    import pandas as pd

    files = sorted(run_dir.glob("iter_*/pairs.parquet"))
    if iteration is not None:
        files = [f for f in files if f.parent.name == f"iter_{iteration:02d}"]
    if not files:
        return "no pairs found" + (f" for iteration {iteration}" if iteration is not None else "")
    df = pd.read_parquet(files[-1])
    out = [f"\n{files[-1]} ({len(df)} rows), first {min(n, len(df))}:"]
    for _, r in df.head(n).iterrows():
        out.append(f"\n--- {r['prompt_id']} (iteration {r['iteration']})")
        out.append("PROMPT:   " + _clip(r["prompt"][-1]["content"], width))
        if "chosen" in r:
            src = "gold solution" if r["chosen_sample_idx"] == -1 else f"sample {r['chosen_sample_idx']}"
            out.append(f"CHOSEN ({src}, reward {r['chosen_reward']:.0f}):")
            out.append(textwrap.indent(_clip(r["chosen"][-1]["content"], width), "    "))
            out.append(f"REJECTED (sample {r['rejected_sample_idx']}, reward {r['rejected_reward']:.0f}):")
            out.append(textwrap.indent(_clip(r["rejected"][-1]["content"], width), "    "))
        else:
            out.append("COMPLETION: " + _clip(r["completion"][-1]["content"], width))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipeline.inspect", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--pairs", type=int, default=0, help="show this many pairs (default: none)")
    ap.add_argument("--iteration", type=int, default=None, help="iteration whose pairs to show (default: last)")
    a = ap.parse_args(argv)
    try:
        print(summary(a.run_dir))
        if a.pairs:
            print(show_pairs(a.run_dir, a.pairs, a.iteration))
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
