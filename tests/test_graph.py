"""The stage table (pipeline/graph.py): every read is declared, keys follow what a stage reads, and the loop
runs in-process on the tiny model (the fast end-to-end test beside the subprocess ones in test_e2e.py)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from conftest import compose_config

from pipeline.graph import NAMES, TABLE, Inputs, Named, UndeclaredRead, configs_at, plan, stages_at


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
    assert [n for (t, n) in plan(cfg) if t == 1] == ["prompts", "generations", "judgments", "behaviors",
                                                     "meta_judgments", "pairs", "model", "eval"]
    assert [st.name for st in stages_at(3, configs_at(cfg, 3))][4] == "pairs"  # no meta-judge in iteration 3
    assert NAMES == ("bootstrap", "model", "prompts", "generations", "judgments", "behaviors", "meta_judgments",
                     "refinements", "pairs", "eval")
    refine = _compose("method=irpo_refine", "behaviors=none")
    assert [n for (t, n) in plan(refine) if t == 1] == ["prompts", "generations", "judgments", "refinements", "pairs",
                                                        "model", "eval"]
    primed = _compose("task=gym", "bootstrap=priming")
    assert [n for (t, n) in plan(primed) if t == 0] == ["bootstrap", "model", "eval"]
    assert plan(primed)[(0, "bootstrap")].config["bootstrap"]["condition"] == "all"
    assert [n for (t, n) in plan(_compose("task=gym", "bootstrap=priming", "bootstrap.condition=unprimed"))
            if t == 0] == ["eval"]  # the control arm: no fine-tuning


@pytest.mark.parametrize("overrides, by_path", [
    (("method=self_rewarding", "judge.model=/m/judge", "prompts.model=py:m:write", "eval.win_rate_judge=/m/win"),
     {"judge.model", "prompts.model", "eval.win_rate_judge"}),
    (("method=meta_rewarding", "meta_judge.model=/m/meta", "behaviors.classifier=/m/classifier"),
     {"meta_judge.model", "behaviors.classifier"}),
    (("method=tpo", "judge.model=/m/pairwise"), {"judge.model"}),
    *[((f"method={m}",), set()) for m in ("irpo", "irpo_refine", "dpo", "star", "seele", "tpo_direct")],
])
def test_a_model_a_stage_names_is_declared_with_the_field_that_holds_it(overrides, by_path):
    """The up-front check of models named by path (pipeline/loop.py) reports the field a stage's `Named` read
    declares: the field must hold that model, and only paths and py: callables are left to the check."""
    cfg, fields = _compose(*overrides), set()
    for t in range(cfg.iterations + 1):
        s = configs_at(cfg, t)
        for st in stages_at(t, s):
            for r in st.reads(s, t):
                if isinstance(r, Named):
                    group, attr = r.field.split(".")
                    assert getattr(getattr(s, group), attr) == r.spec, (st.name, r)
                    assert (r.read is None) == (r.spec not in ("current", "initial"))
            fields |= {m.field for m in st.named_models(s, t)}
            assert not any(r[1] == "model" and r[0] not in (0, t - 1, t) for r in st.artifacts(s, t))
    assert fields == by_path


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


def test_pruning_removes_weights_no_pending_stage_reads_and_finishes_after_a_kill(tmp_path):
    """keep_models=latest: M1's weights go once every stage reading M1 is done (M2, the newest, stays); a kill
    between the note and the deletion (note written, weights still there) is finished by the next prune."""
    from pipeline.store import PRUNED, Store

    store = Store(tmp_path / "run", plan(compose_config("iterations=3")))
    for (t, name) in store.plan:
        if t <= 2:
            if name == "model":
                store.model(t, lambda d: (d / "model.safetensors").write_bytes(b"w" * 100) and {})
            else:
                store.dir(t).mkdir(parents=True, exist_ok=True)
                store._finish(t, name, 0, 0.0, {})
    weights = lambda t: store.path(t, "model") / "model.safetensors"  # noqa: E731
    assert store.prune_models() == [1] and not weights(1).exists() and weights(2).exists()
    assert store.pruned(1)["bytes"] == 100 and store.prune_models() == []
    weights(1).write_bytes(b"w" * 100)  # as if killed after the note was written, before the weights were deleted
    assert (store.path(1, "model") / PRUNED).exists() and store.prune_models() == [1] and not weights(1).exists()
