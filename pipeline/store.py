"""The per-iteration artifact store: paths, atomic writes, completion markers, resume.

    <run>/iter_00/eval.parquet + eval.done.json                  (iteration 0: the starting model)
    <run>/iter_01/prompts.parquet, generations.parquet, judgments.parquet, pairs.parquet, model/, eval.parquet,
                  each followed by <name>.done.json, and metrics.json

A stage's output is written under a temporary name and renamed into place; its marker
(``<name>.done.json``: key, config, count, seconds, stats) is written last, also atomically. A stage counts
as finished only when its marker exists and holds the key the current config plans for it, so a kill at
any moment loses at most the stage in flight, and an output without a marker is never trusted.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from pathlib import Path
from typing import Callable

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.graph import LAYOUT, PlannedStage


PRUNED = "PRUNED.json"  # in a model folder whose weights keep_models=latest removed
WEIGHT_SUFFIXES = (".safetensors", ".safetensors.index.json", ".bin", ".pt")


class StaleStageError(RuntimeError):
    """A finished stage was computed under a different config than the one asked for now."""


def atomic_write_text(path: Path, text: str) -> None:
    """`text` into `path` whole or not at all (a kill leaves the old file or none, never a torn one)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _diff(old: dict, new: dict, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k, "<unset>"), new.get(k, "<unset>")
        if isinstance(a, dict) and isinstance(b, dict):
            out += _diff(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}: {a!r} -> {b!r}")
    return out


class RunInUseError(RuntimeError):
    """Another process holds the run folder."""


class Store:
    def __init__(self, root: str | Path, plan: dict[tuple[int, str], PlannedStage]):
        self.root = Path(root)
        self.plan = plan
        self.root.mkdir(parents=True, exist_ok=True)
        # one writer per run folder: a second process would delete the first one's temporary files below
        self._lock = open(self.root / ".lock", "w")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunInUseError(f"{self.root} is in use by another pipeline process; wait for it to finish or "
                                "choose another folder with run_name=... or hydra.run.dir=... (hydra.sweep.dir=... "
                                "for a sweep)") from None
        leftovers = [p for pattern in ("*.tmp", "*.trainer", "*.job") for p in self.root.glob(f"iter_*/{pattern}")]
        for leftover in leftovers:  # of a killed run: temporary outputs, trainer folders, worker job folders
            shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink(missing_ok=True)

    # ---------------------------------------------------------------- paths and markers
    def dir(self, t: int) -> Path:
        return self.root / f"iter_{t:02d}"

    def path(self, t: int, name: str) -> Path:
        return self.dir(t) / (name if name == "model" else f"{name}.parquet")

    def marker_path(self, t: int, name: str) -> Path:
        return self.dir(t) / f"{name}.done.json"

    def marker(self, t: int, name: str) -> dict | None:
        p = self.marker_path(t, name)
        return json.loads(p.read_text()) if p.exists() else None

    def read(self, t: int, name: str) -> list[dict]:
        """The records of a finished table."""
        if not self.is_done(t, name):
            raise RuntimeError(f"iter_{t:02d}/{name} is read before it is finished")
        return pq.read_table(self.path(t, name)).to_pylist()

    def is_done(self, t: int, name: str) -> bool:
        m = self.marker(t, name)
        return m is not None and m["key"] == self.plan[(t, name)].key

    def stale(self) -> list[str]:
        """Finished stages whose key differs from the plan, each explained; upstream first."""
        out = []
        for (t, name), planned in sorted(self.plan.items()):
            m = self.marker(t, name)
            if m is None or m["key"] == planned.key:
                continue
            diffs = _diff(m.get("config", {}), planned.config)
            why = "; ".join(diffs) if diffs else f"an input changed ({', '.join(planned.deps)})"
            out.append(f"iter_{t:02d}/{name}: {why}")
        return out

    def check(self, on_change: str) -> list[str]:
        """Before any work: refuse (on_change=error) or forget (on_change=recompute) stale stages. A folder
        written by an earlier artifact layout is refused with that reason: its stages meant other things."""
        old = sorted({str(m.get("config", {}).get("layout", 1)) for m in map(json.loads, map(
            Path.read_text, self.root.glob("iter_*/*.done.json"))) if m.get("config", {}).get("layout") != LAYOUT})
        if old and on_change == "error":
            raise StaleStageError(
                f"{self.root} was written by an earlier version of the pipeline (artifact layout {', '.join(old)}; "
                f"this version writes layout {LAYOUT}: stage names, identities and metric names changed), so its "
                "results are not reused. Rerun with on_change=recompute to discard them, or choose a new folder "
                "with run_name=... or hydra.run.dir=...")
        stale = self.stale()
        if stale and on_change == "error":
            raise StaleStageError(
                f"{self.root} holds results computed with a different config:\n  " + "\n  ".join(stale[:8])
                + ("\n  ..." if len(stale) > 8 else "")
                + "\nRerun with on_change=recompute to discard them (and everything computed from them), or choose "
                "a new folder with run_name=... or hydra.run.dir=...")
        for (t, name) in sorted(self.plan):
            m = self.marker(t, name)
            if m is not None and m["key"] != self.plan[(t, name)].key:
                self.marker_path(t, name).unlink()
        return stale

    # ---------------------------------------------------------------- stages
    def _finish(self, t: int, name: str, count: int, seconds: float, stats: dict) -> dict:
        planned = self.plan[(t, name)]
        marker = {"stage": name, "iteration": t, "key": planned.key, "deps": planned.deps, "count": count,
                  "seconds": round(seconds, 2), "stats": stats, "config": planned.config,
                  "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
        atomic_write_text(self.marker_path(t, name), json.dumps(marker, indent=1, default=str))
        return marker

    def table(self, t: int, name: str, compute: Callable[[], tuple[list[dict], dict]]) -> tuple[list[dict], dict]:
        """The records of stage `name` of iteration `t`: read if finished, else computed and written."""
        if self.is_done(t, name):
            return pq.read_table(self.path(t, name)).to_pylist(), self.marker(t, name)
        self.marker_path(t, name).unlink(missing_ok=True)
        t0 = time.time()
        records, stats = compute()
        columns = dict.fromkeys(k for r in [{"iteration": t}] + records for k in r)  # a key missing in a row: null
        records = [{k: r.get(k) for k in columns} | {"iteration": t} for r in records]
        self.dir(t).mkdir(parents=True, exist_ok=True)
        path = self.path(t, name)
        tmp = path.with_name(path.name + ".tmp")
        pq.write_table(pa.Table.from_pylist(records), tmp)
        os.replace(tmp, path)
        marker = self._finish(t, name, len(records), time.time() - t0, stats)
        for scratch in self.dir(t).glob(f"{name}.partial-*"):  # work in progress: finished now
            shutil.rmtree(scratch, ignore_errors=True)
        return pq.read_table(path).to_pylist(), marker

    def scratch(self, t: int, name: str) -> Path:
        """Work in progress of stage `name` of iteration t (e.g. SEELE's finished rounds): a folder named by the
        stage's key, so a kill keeps it for the rerun and a changed config does not read it. Others are removed."""
        path = self.dir(t) / f"{name}.partial-{self.plan[(t, name)].key}"
        for old in self.dir(t).glob(f"{name}.partial-*"):
            if old != path:
                shutil.rmtree(old, ignore_errors=True)
        return path

    def model(self, t: int, compute: Callable[[Path], dict]) -> tuple[str, dict]:
        """The model trained in iteration `t`: its folder if finished, else trained (into a temporary folder
        that is renamed into place) and recorded."""
        path = self.path(t, "model")
        if self.is_done(t, "model"):
            return str(path), self.marker(t, "model")
        self.marker_path(t, "model").unlink(missing_ok=True)
        self.dir(t).mkdir(parents=True, exist_ok=True)
        tmp = path.with_name("model.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()  # exists while training is in flight
        t0 = time.time()
        stats = compute(tmp)
        shutil.rmtree(path, ignore_errors=True)
        os.replace(tmp, path)
        marker = self._finish(t, "model", stats.get("examples", 0), time.time() - t0, stats)
        return str(path), marker

    # ---------------------------------------------------------------- models no stage will read again
    def pruned(self, t: int) -> dict | None:
        """Why iteration t's model weights were removed (keep_models=latest), or None while they are there."""
        p = self.path(t, "model") / PRUNED
        return json.loads(p.read_text()) if p.is_file() else None

    def check_pruned(self) -> None:
        """Before any work: an unfinished stage that reads a model whose weights were pruned (a config change made
        it stale) cannot run; say so, with the ways out."""
        lost = sorted({t for (t, name) in self._pending_reads() if name == "model" and self.is_done(t, name)
                       and self.pruned(t)})
        if lost:
            names = ", ".join(f"iter_{t:02d}/model" for t in lost)
            raise StaleStageError(
                f"{names}: needed again by a stage this config recomputes, but the weights were removed when no "
                f"stage read them any more (keep_models=latest). Choose a new folder (run_name=...) with "
                f"keep_models=all, or delete {self.marker_path(lost[0], 'model')} to retrain from there")

    def _pending_reads(self) -> set[tuple[int, str]]:
        """Every artifact an unfinished stage of the plan reads."""
        return {r for (t, name), planned in self.plan.items() if not self.is_done(t, name) for r in planned.reads}

    def prune_models(self) -> list[int]:
        """Remove the weights of every finished model that no unfinished stage of the plan reads, except the
        latest one (the run's result, and what a longer rerun starts from) and iteration 0's (a bootstrapped M0:
        a later `reference: initial` or judge may read it). The folder keeps its config, tokenizer, trainer log
        and a note saying why; its marker stays, so a rerun does not retrain it. Returns the iterations pruned."""
        done = sorted(t for (t, name) in self.plan if name == "model" and self.is_done(t, name))
        needed = self._pending_reads()
        out = []
        for t in done[:-1]:
            folder = self.path(t, "model")
            if t == 0 or (t, "model") in needed or not folder.is_dir():
                continue
            weights = [p for p in folder.iterdir() if p.name.endswith(WEIGHT_SUFFIXES) or p.name == "adapter"]
            if not weights:  # pruned already (a kill between the note and the deletion leaves weights: go on)
                continue
            freed = sum(f.stat().st_size for w in weights for f in ([w] if w.is_file() else w.rglob("*")))
            atomic_write_text(folder / PRUNED, json.dumps({
                "pruned_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "bytes": freed,
                "why": "keep_models=latest: no later stage reads this model; rerun with keep_models=all to keep "
                       "every iteration's weights"}, indent=1))
            for w in weights:
                shutil.rmtree(w) if w.is_dir() else w.unlink()
            out.append(t)
        return out

    def write_metrics(self, t: int, metrics: dict) -> None:
        self.dir(t).mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.dir(t) / "metrics.json", json.dumps(metrics, indent=1, default=str))
