"""End-to-end `method=tpo` and `method=meta_rewarding` on the tiny model, two iterations each, with resume, and
TRL training on TPO's thought pairs.

TPO runs its real path: the tiny model is fine-tuned on the seed data in the thought format and then asked to
think first; a random 1-layer model never writes the markers, so every output is flagged unparsed, never
judged, and no pair forms — the test follows that data through every stage. The TPO training itself (whole
output, thought prompt in the input) is tested on pairs with real thoughts below. Meta-Rewarding uses scripted
judges (tests/fake_models.py) so that judgments disagree and the meta-judge has something to rank: its
judge pairs must train together with the actor pairs."""

from __future__ import annotations

import glob
import json
import math
from pathlib import Path

import pandas as pd
import pytest

from conftest import TINY, pipeline_cmd, run_pipeline
from test_e2e import _counts, _kill_when, _table
from wandb_reader import history

SMALL = ["judge.max_new_tokens=24", "eval.pairwise_max_new_tokens=16"]
TPO = TINY + ["method=tpo", "generate.max_new_tokens=24", "eval.max_new_tokens=24", "logger=none"] + SMALL
META = TINY + ["method=meta_rewarding", "bootstrap=none", "judge.num_judgments=3", "meta_judge.max_share=0.5",
               "judge.model=py:tests.fake_models:varied_judge", "meta_judge.model=py:tests.fake_models:longer_judgment_wins",
               "eval.win_rate_judge=py:tests.fake_models:longer_wins"] + SMALL


def _marker(run: Path, t: int, name: str) -> dict:
    return json.loads((run / f"iter_{t:02d}" / f"{name}.done.json").read_text())


def test_tpo_thinks_first_flags_unparsed_outputs_and_resumes(tmp_path, env):
    run = tmp_path / "run"
    _kill_when(pipeline_cmd(run, *TPO), env, lambda: (run / "iter_02" / "generations.done.json").exists())
    p = run_pipeline(run, *TPO, env=env)  # resumes inside iteration 2
    assert "[iter 2]" in p.stdout and "thoughts parsed" in p.stdout and "bootstrap (sft" not in p.stdout + p.stderr
    boot = _table(run, 0, "bootstrap")
    ift = boot[boot["kind"] == "ift"].iloc[0]
    assert "Thoughts:" in ift["prompt"][-1]["content"]  # the seed instructions are asked with the thought prompt
    assert ift["completion"][0]["content"].startswith("Thoughts:\n") and "\nResponse:\n" in ift["completion"][0]["content"]
    for t in (1, 2):
        gens = _table(run, t, "generations")
        assert {"thought", "response", "parsed", "parse_error"} <= set(gens.columns)
        stats = _marker(run, t, "generations")["stats"]
        assert stats["parse_failure_rate"] == pytest.approx(1 - gens["parsed"].mean())
        judged = _table(run, t, "judgments")
        unparsed = judged[~judged["parsed"]]
        assert (unparsed["status"] == "unparsed").all() and all(len(j) == 0 for j in unparsed["judgments"])
        m = json.loads((run / f"iter_{t:02d}" / "metrics.json").read_text())
        assert "generate/parse_failure_rate" in m and "eval/parse_failure_rate" in m and "eval/response_chars" in m
    ev = _table(run, 2, "eval")
    assert {"output", "thought", "parsed", "win_score", "judge_score"} <= set(ev.columns)
    # an unparsed output is evaluated whole: what a user would see
    assert all(r["completion"] == (r["output"].strip() if not r["parsed"] else r["completion"]) for _, r in ev.iterrows())
    again = run_pipeline(run, *TPO, env=env)
    assert "[iter 2]" in again.stdout and _counts(run)["iter_02/eval"] == 8


def test_tpo_direct_baseline_is_the_same_pipeline_without_thoughts(tmp_path, env):
    run = tmp_path / "run"
    p = run_pipeline(run, *TPO, "method=tpo_direct", "iterations=1", env=env)
    assert "[iter 1]" in p.stdout and "thoughts parsed" not in p.stdout
    assert "thought" not in _table(run, 1, "generations").columns
    cfg = (run / ".hydra" / "config.yaml").read_text()
    assert "method_name: tpo_direct" in cfg and "length_control: zscore" in cfg


def test_dpo_trains_on_thought_pairs_with_the_thought_prompt(tiny_model, tmp_path):
    from stages.pairs import PairsConfig, build_pairs
    from stages.thoughts import ThoughtConfig, split_records, wrap
    from stages.train import TrainConfig, train
    from test_train import _changed, _weights

    thought = ThoughtConfig(template="{instruction}\nThink, then answer after 'Response:'.")
    prompts = [{"prompt_id": f"p{i}", "messages": [{"role": "user", "content": f"Name {i + 2} colours."}]} for i in range(4)]
    outputs = ["Thoughts:\nList them.\nResponse:\nred, blue", "Thoughts:\nHm.\nResponse:\nI like dogs.", "no format"]
    gens, _ = split_records([{"prompt_id": p["prompt_id"], "sample_idx": k, "completion": o}
                             for p in prompts for k, o in enumerate(outputs)], thought)
    judged = [{**g, "reward": (5.0 if g["sample_idx"] == 0 else 1.0) if g["parsed"] else None} for g in gens]
    pairs, stats = build_pairs(wrap(prompts, thought), judged, PairsConfig(rule="score", length_control="zscore",
                                                                          rho=0.2, max_unparsed_share=0.2))
    assert stats["pairs"] == 5 and stats["unparsed_pairs"] == 1
    assert all(p["prompt"][-1]["content"].endswith("after 'Response:'.") for p in pairs)
    assert all(p["chosen"][0]["content"] == outputs[0] for p in pairs)  # the whole output, thought included
    out = tmp_path / "m1"
    metrics = train(tiny_model, pairs, out, TrainConfig(alpha=0, args={
        "learning_rate": 1e-3, "per_device_train_batch_size": 2, "num_train_epochs": 1, "max_length": 128,
        "gradient_checkpointing": False, "beta": 0.1, "seed": 0}))
    assert math.isfinite(metrics["train_loss"]) and metrics["steps"] == 3
    assert _changed(_weights(tiny_model), _weights(out)) > 0


@pytest.fixture(scope="module")
def meta_run(tmp_path_factory, env) -> tuple[Path, str]:
    run = tmp_path_factory.mktemp("meta") / "run"
    p = run_pipeline(run, *META, env=env)
    return run, p.stdout


def test_meta_rewarding_trains_actor_and_judge_pairs_together(meta_run):
    run, out = meta_run
    assert "meta-judge" in out and "judge pairs" in out
    for t in (1, 2):
        meta = _table(run, t, "meta_judgments")
        assert len(meta) > 0 and {"verdict_ij", "verdict_ji", "elo_i", "elo_j", "score_i", "score_j"} <= set(meta.columns)
        stats = _marker(run, t, "meta_judgments")["stats"]
        assert stats["position_bias"] == 0.5 and stats["unparseable_verdicts"] == 0
        pairs = _table(run, t, "pairs")
        kinds = pairs["pair_type"].value_counts().to_dict()
        assert kinds.get("judge", 0) > 0 and kinds.get("actor", 0) > 0
        assert kinds["judge"] / len(pairs) <= 0.5  # meta_judge.max_share
        judge = pairs[pairs["pair_type"] == "judge"].iloc[0]
        assert judge["prompt"][-1]["content"].startswith("Review the user's instruction")  # the judge prompt
        assert len(judge["chosen"][0]["content"]) > len(judge["rejected"][0]["content"])  # the scripted meta-judge
        m = json.loads((run / f"iter_{t:02d}" / "metrics.json").read_text())
        assert m["train/examples"] == len(pairs) and m["meta_judge/comparisons"] == len(meta)
        assert "meta_judge/prefers_higher_score" in m and "eval/judge_agreement" in m and "judge/hist_5" in m
    actor = _table(run, 2, "pairs").query("pair_type == 'actor'")
    assert (actor["chosen_reward"] > actor["rejected_reward"]).all()
    files = glob.glob(str(run / "wandb" / "offline-run-*" / "run-*.wandb"))  # the meta-judge's figures reach W&B
    rows = [r for r in history(files[0]) if "meta_judge/position_bias" in r]
    assert [r["iteration"] for r in rows] == [1, 2] and "pairs/judge_pairs" in rows[0]


def test_meta_rewarding_resumes_after_kill(tmp_path, env, meta_run):
    reference, _ = meta_run
    run = tmp_path / "run"
    _kill_when(pipeline_cmd(run, *META, "logger=none"), env, lambda: (run / "iter_01" / "model.tmp").exists())
    assert (run / "iter_01" / "meta_judgments.done.json").exists() and not (run / "iter_01" / "model.done.json").exists()
    p = run_pipeline(run, *META, "logger=none", env=env)
    assert "[iter 2]" in p.stdout and _counts(run) == _counts(reference)
    for name in ("judgments", "meta_judgments", "pairs"):
        pd.testing.assert_frame_equal(_table(run, 2, name), _table(reference, 2, name))


def test_inspect_shows_thoughts_meta_judgments_and_both_pair_types(meta_run, capsys):
    from pipeline.inspect import main

    run, _ = meta_run
    assert main([str(run), "--meta", "1", "--pairs", "40"]) == 0
    out = capsys.readouterr().out
    assert "meta_judgments(" in out and "JUDGMENT i" in out and "[judge pair]" in out and "[actor pair]" in out
