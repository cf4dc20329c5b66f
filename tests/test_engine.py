"""One engine for every model call: with `generate=vllm`, sampling, self-instruct, the LLM judge and every
evaluation call go to vLLM worker processes. A stand-in `vllm` package (tests/fake_vllm) on the workers' path
records the prompts it receives; the real-vLLM test (test_runner.py) skips without CUDA."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import ROOT, TINY, run_pipeline


def test_generate_vllm_sends_every_model_call_of_self_rewarding_to_vllm(tmp_path, env):
    log = tmp_path / "vllm-prompts.jsonl"
    e = {**env, "PYTHONPATH": str(ROOT / "tests" / "fake_vllm"), "FAKE_VLLM_LOG": str(log), "CUDA_VISIBLE_DEVICES": "0"}
    p = run_pipeline(tmp_path / "run", *TINY, "method=self_rewarding", "bootstrap=none", "iterations=1", "logger=none",
                     "generate=vllm", env=e)
    asked = [json.loads(line) for line in log.read_text().splitlines()]
    prompts = [a["prompt"] for a in asked]
    kinds = {
        "self-instruct": any("Task 1:" in q for q in prompts),
        "sampling": any(a["temperature"] == 0.7 and a["n"] == 2 for a in asked),  # generate: smoke N=2, T=0.7
        "LLM judge": any("Score: <total points>" in q for q in prompts),
        "evaluation (greedy)": any(a["temperature"] == 0 and "Score:" not in q and "Winner" not in q
                                   for a, q in zip(asked, prompts)),
        "evaluation (win rate vs M0)": any('"Winner: A"' in q for q in prompts),
    }
    assert all(kinds.values()), kinds
    m = json.loads((tmp_path / "run" / "iter_01" / "metrics.json").read_text())
    assert m["eval/vs_m0_comparisons"] > 0 and m["judge/valid"] > 0 and m["prompts/kept"] > 0
    assert "vllm" in Path(tmp_path / "run" / "iter_01" / "generations.done.json").read_text()  # the engine recorded
    assert "[iter 1]" in p.stdout
