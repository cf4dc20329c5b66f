"""The real embedded model, end to end: GGUF conversion, one short IRPO iteration, a trained checkpoint.
Marked slow (a few minutes on 2 cores); CI runs it."""

from __future__ import annotations

import json

import pytest

from conftest import run_pipeline

pytestmark = pytest.mark.slow


def test_one_short_iteration_on_smollm2(tmp_path, env, cache_dir):
    run = tmp_path / "run"
    p = run_pipeline(run, "iterations=1", "logger=none", "task.prompts_per_iteration=4", "task.max_test=4",
                     "generate.num_samples=2", "generate.max_new_tokens=48", "eval.max_new_tokens=48",
                     "pairs.pairs_per_prompt=2", env=env, timeout=1500)
    assert "[iter 1]" in p.stdout and "Held-out accuracy per iteration" in p.stdout
    converted = json.loads((cache_dir / "smollm2-135m-instruct" / "config.json").read_text())
    assert "quantization_config" not in converted and converted["num_hidden_layers"] == 30
    gens = json.loads((run / "iter_01" / "generations.done.json").read_text())
    assert gens["count"] == 8 and gens["stats"]["tokens"] > 0
    import pandas as pd

    texts = pd.read_parquet(run / "iter_01" / "generations.parquet")["completion"]
    assert texts.str.len().mean() > 20 and texts.str.contains(r"\d").mean() > 0.5  # real English with numbers
    model = json.loads((run / "iter_01" / "model.done.json").read_text())
    assert model["count"] > 0 and model["stats"]["steps"] > 0
    from stages.modeling import fingerprint, load_model

    assert fingerprint(load_model(str(run / "iter_01" / "model"))) != gens["stats"]["model_fingerprint"]
