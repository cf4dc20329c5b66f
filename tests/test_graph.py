"""The stage table (pipeline/graph.py): every read is declared, keys follow what a stage reads, and the loop
runs in-process on the tiny model (the fast end-to-end test beside the subprocess ones in test_e2e.py)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from conftest import compose_config

from pipeline.graph import NAMES, TABLE, Inputs, UndeclaredRead, configs_at, plan, stages_at


_compose = compose_config


def _downstream(keys: dict, start: set) -> set:
    """Every planned stage that reads one of `start`, transitively."""
    out, grew = set(start), True
    while grew:
        grew = False
        for k, p in keys.items():
            if k not in out and any(r in out for r in p.reads):
                out.add(k)
                grew = True
    return out


@pytest.mark.parametrize("override,first", [
    ("generate.temperature=0.7", (1, "generations")),
    ("pairs.pairs_per_prompt=3", (1, "pairs")),
    ("judge.extractors=[answer_line]", (0, "eval")),  # the checker: the evaluation and the judgments
    ("train.beta=0.2", (1, "model")),
    ("task.seed=7", (0, "eval")),
    ("seed=3", (0, "eval")),
])
def test_a_config_change_changes_exactly_the_stages_that_read_it(override, first):
    base, changed = plan(_compose()), plan(_compose(override))
    differ = {k for k in base if base[k].key != changed[k].key}
    own = {k for k in base if base[k].config != changed[k].config}  # whose identity holds the changed value
    assert first in own
    assert differ == _downstream(base, own)  # and everything computed from them, nothing else


def test_plan_order_follows_the_table_and_the_algorithm():
    cfg = _compose("method=meta_rewarding")
    assert [n for (t, n) in plan(cfg) if t == 0] == ["bootstrap", "model", "eval"]
    assert [n for (t, n) in plan(cfg) if t == 1] == ["prompts", "generations", "judgments", "meta_judgments", "pairs",
                                                     "model", "eval"]
    assert [st.name for st in stages_at(3, configs_at(cfg, 3))][3] == "pairs"  # no meta-judge in iteration 3
    assert NAMES == ("bootstrap", "model", "prompts", "generations", "judgments", "meta_judgments", "refinements",
                     "pairs", "eval")
    refine = _compose("method=irpo_refine")
    assert [n for (t, n) in plan(refine) if t == 1] == ["prompts", "generations", "judgments", "refinements", "pairs",
                                                        "model", "eval"]


def test_reading_anything_undeclared_raises():
    cfg = _compose()
    s = configs_at(cfg, 1)
    gen = next(st for st in TABLE if st.name == "generations")
    inp = Inputs(run=None, stage=gen, t=2, s=s, declared=plan(cfg)[(2, "generations")].reads)
    assert inp.cfg.generate.num_samples == 4
    with pytest.raises(UndeclaredRead, match="pairs"):
        inp.cfg.pairs
    with pytest.raises(UndeclaredRead, match="iter_02/judgments"):
        inp.table("judgments")
    with pytest.raises(UndeclaredRead, match="seed"):
        inp.value("seed")
    with pytest.raises(UndeclaredRead, match="iter_00/model"):
        inp.model("initial")  # M0: generation reads M(t-1) only
    assert inp.model("/some/model") == "/some/model"  # a path is not an artifact of the run


def test_the_loop_in_process_on_the_tiny_model(tmp_path, cache_dir):
    """`pipeline.loop.run` with the real stages (no subprocess): artifacts, metrics named by stage, and a resume
    that recomputes nothing."""
    from pipeline.loop import run

    cfg = _compose("model=tiny", "experiment=smoke", "logger=none", f"paths.cache_dir={cache_dir}", "iterations=1")
    history = run(cfg, tmp_path / "run")
    assert [m["iteration"] for m in history] == [0, 1]
    m = history[1]
    for group in ("prompts", "generate", "judge", "pairs", "train", "eval"):
        assert f"{group}/count" in m and f"{group}/seconds" in m, group
    assert m["generate/count"] == 8 and m["judge/correct"] + m["judge/incorrect"] + m["judge/unparseable"] == 8
    assert json.loads((tmp_path / "run" / "iter_01" / "metrics.json").read_text())["eval/accuracy"] == m["eval/accuracy"]
    judged = pd.read_parquet(tmp_path / "run" / "iter_01" / "judgments.parquet")
    assert {"status", "reward", "score", "feedback"} <= set(judged.columns) and judged["feedback"].str.len().min() > 0
    markers = {p: p.stat().st_mtime_ns for p in (tmp_path / "run").glob("iter_*/*.done.json")}
    assert run(cfg, tmp_path / "run") == history  # resumed: the same numbers, nothing recomputed
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "run").glob("iter_*/*.done.json")} == markers


def test_a_run_folder_of_the_earlier_layout_is_refused_with_the_reason(tmp_path):
    from pipeline.store import StaleStageError, Store

    old = tmp_path / "run" / "iter_01"
    old.mkdir(parents=True)  # a marker as the pipeline wrote them before the stage table (no layout in its config)
    (old / "generations.done.json").write_text(json.dumps({"stage": "generations", "key": "0123", "config": {
        "generate": {"num_samples": 4}}, "count": 8, "seconds": 1.0, "stats": {}}))
    store = Store(tmp_path / "run", plan(_compose()))
    with pytest.raises(StaleStageError, match=r"earlier version of the pipeline \(artifact layout 1"):
        store.check("error")
    assert store.check("recompute") and not (old / "generations.done.json").exists()  # forgotten, then recomputed
