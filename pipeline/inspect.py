"""Inspect a run folder: what finished, per-iteration metrics, and sample pairs.

    python -m pipeline.inspect outputs/irpo-smollm2-135m-instruct-arithmetic
    python -m pipeline.inspect <run dir> --pairs 3 --iteration 2     # show 3 pairs of iteration 2
    python -m pipeline.inspect <run dir> --judgments 2               # 2 judged responses with the judge's text
    python -m pipeline.inspect <run dir> --meta 1                    # meta-judge comparisons (Meta-Rewarding)
    python -m pipeline.inspect <run dir> --refine 2                  # 2 prompts' refine threads, round by round
    python -m pipeline.inspect <run dir> --hints 3                   # SEELE: 3 problems' hint rate and accuracy per round
    python -m pipeline.inspect <run dir> --behaviors 3 --behavior backtracking   # 3 samples that backtrack

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

from pipeline.graph import NAMES
from pipeline.report import format_table
from stages.behaviors import BEHAVIORS


def _clip(text: str, width: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 3] + "..."


def _planned(run_dir: Path) -> list[tuple[int, str]]:
    """The stages the run's saved config plans (pipeline/graph.py), in order; [] when it cannot be read."""
    path = run_dir / ".hydra" / "config.yaml"
    try:
        from omegaconf import OmegaConf

        from pipeline.graph import plan

        return list(plan(OmegaConf.load(path)))
    except Exception:  # no or an unreadable saved config: list what is there only
        return []


def summary(run_dir: Path) -> str:
    iters = sorted(p for p in run_dir.glob("iter_*") if p.is_dir())
    if not iters:
        up = next((p for p in run_dir.parents[:2] if any(p.glob("iter_*/"))), None)  # an iteration folder or file
        raise FileNotFoundError(f"{run_dir}: no iteration folders ("
                                + (f"give the run folder: {up})" if up else "is this a run folder?)"))
    lines = [f"Run: {run_dir.resolve()}", ""]
    history = []
    planned = _planned(run_dir)
    for d in iters:
        done = []
        t = int(d.name.split("_")[1])
        for name in [n for (it, n) in planned if it == t] or NAMES:  # in the order the stages ran
            mk = d / f"{name}.done.json"
            if mk.exists():
                m = json.loads(mk.read_text())
                done.append(f"{name}({m['count']}, {m['seconds']:.0f}s)")
        pending = [n for (it, n) in planned if it == t and not (d / f"{n}.done.json").exists()]
        lines.append(f"{d.name}: done " + (", ".join(done) or "-") + (f"; not done: {', '.join(pending)}" if pending
                                                                       else ""))
        if (d / "metrics.json").exists():
            history.append(json.loads((d / "metrics.json").read_text()))
    if history:
        lines += ["", format_table(history)]
    return "\n".join(lines)


def _latest(run_dir: Path, name: str, n: int, iteration: int | None):
    """(path, first n rows, header lines) of table `name` of `iteration` (default: the last one that has it); the
    rows are None when there are none (the path too when no iteration has the table), the line then says why."""
    import pandas as pd

    every = sorted(run_dir.glob(f"iter_*/{name}.parquet"))
    files = [f for f in every if f.parent.name == f"iter_{iteration:02d}"] if iteration is not None else every
    if not files:
        have = ", ".join(str(int(f.parent.name[5:])) for f in every)
        return None, None, [f"no {name} found" + (f" for iteration {iteration} (iterations that have them: {have})"
                                                  if iteration is not None and every else "")]
    df = pd.read_parquet(files[-1])
    if df.empty:  # e.g. a meta-judge that had no two parsed judgments to compare
        return files[-1], None, [f"{files[-1]}: no rows"]
    return files[-1], df.head(n), [f"\n{files[-1]} ({len(df)} rows), first {min(n, len(df))}:"]


def show_pairs(run_dir: Path, n: int, iteration: int | None, width: int = 300) -> str:
    path, df, out = _latest(run_dir, "pairs", n, iteration)
    for _, r in ([] if df is None else df.iterrows()):
        kind = f" [{r['pair_type']} pair]" if isinstance(r.get("pair_type"), str) else ""
        out.append(f"\n--- {r['prompt_id']} (iteration {r['iteration']}){kind}")
        out.append("PROMPT:   " + _clip(r["prompt"][-1]["content"], width))
        if "chosen" in r:
            src = "gold solution" if r["chosen_sample_idx"] == -1 else f"sample {r['chosen_sample_idx']}"
            out.append(f"CHOSEN ({src}, reward {r['chosen_reward']:.2f}):")
            out.append(textwrap.indent(_clip(r["chosen"][-1]["content"], width), "    "))
            out.append(f"REJECTED (sample {r['rejected_sample_idx']}, reward {r['rejected_reward']:.2f}):")
            out.append(textwrap.indent(_clip(r["rejected"][-1]["content"], width), "    "))
        else:
            out.append("COMPLETION: " + _clip(r["completion"][-1]["content"], width))
    return "\n".join(out)


def show_judgments(run_dir: Path, n: int, iteration: int | None, width: int = 300) -> str:
    import pandas as pd

    path, df, out = _latest(run_dir, "judgments", n, iteration)
    if df is None:
        return out[0]
    prompts = pd.read_parquet(path.with_name("prompts.parquet")).set_index("prompt_id")
    for _, r in df.iterrows():
        out.append(f"\n--- {r['prompt_id']} sample {r['sample_idx']} (iteration {r['iteration']})")
        out.append("PROMPT:   " + _clip(prompts.loc[r["prompt_id"], "messages"][-1]["content"], width))
        if isinstance(r.get("thought"), str):  # TPO: the judge saw only the response
            out.append("THOUGHT:  " + _clip(r["thought"], width))
            out.append("RESPONSE: " + (_clip(r["response"], width) if r["parsed"] else f"(unparsed: {r['parse_error']})"))
        else:
            out.append("RESPONSE: " + _clip(r["completion"], width))
        if "judgments" in r:  # an LLM judge: every judgment and its parsed score (None = dropped)
            score = "no valid judgment" if r["reward"] is None or r["reward"] != r["reward"] else f"{r['reward']:.2f}"
            scores = [None if x is None or x != x else float(x) for x in r["judgment_scores"]]
            out.append(f"SCORE: {score} from {scores}")
            for k, j in enumerate(r["judgments"]):
                out.append(textwrap.indent(f"judgment {k}: " + _clip(j, width), "    "))
        else:  # the verifiable checker
            out.append(f"VERDICT: {r['status']} (extracted {r['extracted']!r}, reward {r['reward']:.0f})"
                       + (f": {r['feedback']}" if isinstance(r.get("feedback"), str) else ""))
    return "\n".join(out)


def show_meta(run_dir: Path, n: int, iteration: int | None, width: int = 300) -> str:
    """The meta-judge's comparisons of the first n meta-judged responses: both judgments, both verdicts, Elo."""
    import pandas as pd

    path, df, out = _latest(run_dir, "meta_judgments", 10**9, iteration)
    if df is None:
        return out[0]
    judged = pd.read_parquet(path.with_name("judgments.parquet")).set_index(["prompt_id", "sample_idx"])
    out = [f"\n{path} ({len(df)} comparisons)"]
    for (pid, k), group in list(df.groupby(["prompt_id", "sample_idx"], sort=False))[:n]:
        r = judged.loc[(pid, k)]
        out.append(f"\n--- {pid} sample {k}: {len(group)} comparisons of its judgments")
        out.append("RESPONSE: " + _clip(r["response"] if isinstance(r.get("response"), str) else r["completion"], width))
        for _, c in group.iterrows():
            i, j = int(c["judgment_i"]), int(c["judgment_j"])
            out.append(f"JUDGMENT i={i} (score {c['score_i']:g}, Elo {c['elo_i']:.0f}): " + _clip(r["judgments"][i], width))
            out.append(f"JUDGMENT j={j} (score {c['score_j']:g}, Elo {c['elo_j']:.0f}): " + _clip(r["judgments"][j], width))
            outcome = {1.0: "i wins", 0.0: "j wins", 0.5: "tie"}.get(c["outcome_i"], "no verdict")
            out.append(f"    verdicts (i first / j first): {c['winner_ij']} / {c['winner_ji']} -> {outcome}")
    return "\n".join(out)


def show_refine(run_dir: Path, n: int, iteration: int | None, width: int = 300) -> str:
    """The refine threads of the first n prompts that had feedback rounds: every attempt under the attempt it
    revises, with the feedback the model was shown and the checker's verdict."""
    path, df, out = _latest(run_dir, "refinements", 10**9, iteration)
    if df is None:
        return out[0]
    import pandas as pd

    prompts = pd.read_parquet(path.with_name("prompts.parquet")).set_index("prompt_id")
    out = [f"\n{path} ({len(df)} attempts)"]
    refined = [pid for pid, g in df.groupby("prompt_id", sort=False) if (g["round"] > 0).any()][:n]
    for pid in refined:
        g = df[df["prompt_id"] == pid]
        children: dict = {}
        for _, a in g.iterrows():
            children.setdefault((a["parent_round"], a["parent_attempt"]), []).append(a)
        out.append(f"\n--- {pid}: {len(g)} attempts over {g['round'].max()} feedback round(s)")
        out.append("PROMPT:   " + _clip(prompts.loc[pid, "messages"][-1]["content"], width))

        def walk(a, depth):
            pad = "    " * depth
            out.append(f"{pad}[round {a['round']} attempt {a['attempt']}] {a['status']}: "
                       + _clip(a["completion"], width))
            out.append(f"{pad}  tool ({a['feedback_kind']}): " + _clip(a["feedback_shown"], width))
            for c in children.get((a["round"], a["attempt"]), []):
                walk(c, depth + 1)

        for a in children.get((-1, -1), []):
            walk(a, 0)
    return "\n".join(out)


def show_hints(run_dir: Path, n: int, iteration: int | None, width: int = 160) -> str:
    """SEELE's controller on the first n problems (curriculum=seele): per round the hinting rate, the hint and the
    accuracy its samples reached, then the rate carried to the problem's next iteration. The whole history is the
    generations table: one row per sample with round, hint_rate, hint, round_accuracy, next_rate."""
    path, df, out = _latest(run_dir, "generations", 10**9, iteration)
    if df is None:
        return out[0]
    if "hint_rate" not in df:
        return f"{path}: no hints (the run's curriculum is none)"
    out = [f"\n{path} ({df['prompt_id'].nunique()} problems, {df['round'].max()} rounds)"]
    for pid in list(dict.fromkeys(df["prompt_id"]))[:n]:
        g = df[df["prompt_id"] == pid].groupby("round", sort=True).first()
        out.append(f"\n--- {pid}: rate carried to its next iteration {g['next_rate'].iloc[-1]:.2f}")
        for r, row in g.iterrows():
            out.append(f"  round {r}: rate {row['hint_rate']:.2f}, accuracy {row['round_accuracy']:.2f}, hint: "
                       + (_clip(row["hint"], width) or "(none)"))
    return "\n".join(out)


def show_behaviors(run_dir: Path, n: int, iteration: int | None, behavior: str | None = None,
                   width: int = 600) -> str:
    """The first n analysed samples (with `behavior`: those that show it) with their behavior counts and verdict."""
    path, df, out = _latest(run_dir, "behaviors", 10**9, iteration)
    if df is None:
        return out[0] + ("" if path else " (the run's behaviors analysis is off, or no iteration finished it)")
    if behavior is not None:
        df = df[df[behavior] > 0]
    import pandas as pd

    judged = pd.read_parquet(path.with_name("judgments.parquet")).set_index(["prompt_id", "sample_idx"])
    out = [f"\n{path}: {len(df)} samples" + (f" show {behavior}" if behavior else "") + f", first {min(n, len(df))}:"]
    for _, r in df.head(n).iterrows():
        j = judged.loc[(r["prompt_id"], r["sample_idx"])]
        verdict = "" if r["correct"] is None or r["correct"] != r["correct"] else \
            ("correct" if r["correct"] else "incorrect")
        counts = ", ".join(f"{b} {r[b]}" + (f" (classifier {r[f'llm_{b}']})" if f"llm_{b}" in r else "")
                           for b in BEHAVIORS)
        out.append(f"\n--- {r['prompt_id']} sample {r['sample_idx']} {verdict}: {counts}")
        out.append(textwrap.indent(_clip(j["continuation"] if isinstance(j.get("continuation"), str)
                                         else j["completion"], width), "    "))
    return "\n".join(out)


def _count(text: str) -> int:
    """A number of rows to show (argparse type): >= 0."""
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}")
    return int(text)


def main(argv: list[str] | None = None) -> int:
    from pipeline import setup_process

    setup_process()  # the pipeline's library settings (bitsandbytes' CPU-kernel warning, imported through the plan)
    ap = argparse.ArgumentParser(prog="python -m pipeline.inspect", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--pairs", type=_count, default=0, help="show this many pairs (default: none)")
    ap.add_argument("--judgments", type=_count, default=0, help="show this many judged responses (default: none)")
    ap.add_argument("--meta", type=_count, default=0, help="show the meta-judge's comparisons for this many responses")
    ap.add_argument("--refine", type=_count, default=0, help="show the refine threads of this many prompts")
    ap.add_argument("--hints", type=_count, default=0, help="show SEELE's hint rates and accuracies for this many problems")
    ap.add_argument("--behaviors", type=_count, default=0, help="show this many samples with their behavior counts")
    ap.add_argument("--behavior", default=None, choices=BEHAVIORS, help="with --behaviors: only samples that show "
                    "this behavior")
    ap.add_argument("--iteration", type=int, default=None, help="iteration to show (default: last)")
    a = ap.parse_args(argv)
    try:
        print(summary(a.run_dir))
        if a.pairs:
            print(show_pairs(a.run_dir, a.pairs, a.iteration))
        if a.judgments:
            print(show_judgments(a.run_dir, a.judgments, a.iteration))
        if a.meta:
            print(show_meta(a.run_dir, a.meta, a.iteration))
        if a.refine:
            print(show_refine(a.run_dir, a.refine, a.iteration))
        if a.hints:
            print(show_hints(a.run_dir, a.hints, a.iteration))
        if a.behaviors:
            print(show_behaviors(a.run_dir, a.behaviors, a.iteration, a.behavior))
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
