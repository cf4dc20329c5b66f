"""Priming (stages/priming.py): the search program's traces show exactly the behaviors of their condition (checked
with the project's behavior detectors and the Countdown checker), the config refuses what it cannot do, and a primed
run on the tiny model fine-tunes M0 on the traces before its iteration."""

from __future__ import annotations

import functools
import json
import random
import re

import pandas as pd
import pytest

from conftest import compose_config, run_in_process
from pipeline.config import ConfigError, stage_configs
from pipeline.report import behavior_part
from stages.behaviors import BEHAVIORS, count_behaviors
from stages.priming import derivations, plan, trace
from stages.tasks import Problem
from stages.tasks.gym import check_countdown
from stages.verify import VerifyConfig

EXPECTED = {"all": set(BEHAVIORS), "wrong": set(BEHAVIORS), "backtracking": {"backtracking"},
            "no_behaviors": set(), "empty": set(), "filler": set()}


@functools.lru_cache(maxsize=1)
def _planned(n=50, seed=3):
    """(numbers, target, gold, plan) of Countdown problems like the generator's: 3-4 numbers up to 20, a target some
    combination reaches (planned once for every condition's test: the search is the slow part)."""
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        numbers = [rng.randint(1, 20) for _ in range(rng.choice([3, 4]))]
        d = rng.choice(derivations(numbers, random.Random(0), limit=3000))
        if 10 <= d.value <= 100 and d.value.denominator == 1:
            out.append((numbers, d.value, d.expr, plan(numbers, d.value, seed=0)))
    return out


@pytest.mark.parametrize("condition", list(EXPECTED))
def test_each_condition_shows_its_behaviors_and_nothing_else(condition):
    checked = 0
    for numbers, target, gold, p in _planned():
        if p is None or len(p.failures) < 2 or (condition == "wrong" and p.wrong is None):
            continue
        text = trace(p, condition)
        shown = {b for b, n in count_behaviors(text, numbers, target).items() if n}
        assert shown == EXPECTED[condition], (condition, shown, text)
        verdict = check_countdown(Problem(id="p", question="", answer=gold), text, VerifyConfig())
        assert verdict.status == ("incorrect" if condition == "wrong" else "correct"), (verdict, text)
        if condition == "wrong":  # well-formed: each number once, only the value misses
            assert "not the target" in verdict.feedback
        if condition == "empty":
            assert text.startswith("Answer:") and "\n" not in text
        if condition == "filler":
            assert abs(len(text) - len(trace(p, "all"))) <= 3 and not any(ch.isdigit() for ch in text.split("Answer")[0])
        checked += 1
    assert checked >= 35  # the search solves almost every problem (3-4 numbers, non-negative integer steps)


def test_unsolvable_problems_are_skipped_not_faked():
    assert plan([1, 1, 1], 97, seed=0) is None


@pytest.mark.parametrize("overrides, message", [
    (("bootstrap=priming",), "bootstrap=priming writes Countdown traces: use task=gym task.dataset=countdown"),
    (("task=gym", "bootstrap=priming", "bootstrap.condition=some"), "condition must be one of"),
    (("task=gym", "bootstrap=priming", "bootstrap.kind=other"), "bootstrap.kind must be 'seed' or 'priming'"),
])
def test_priming_config_is_checked_before_anything_runs(overrides, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        stage_configs(compose_config(*overrides))


def test_a_primed_run_fine_tunes_m0_on_the_traces_and_analyses_its_samples(tmp_path, cache_dir):
    """One tiny run for the priming bootstrap and the behaviors stage with its optional classifier (current model)."""
    run = tmp_path / "primed"
    history = run_in_process(run, cache_dir, "task=gym", "task.dataset=countdown",
                             "+task.options={min_numbers: 3, max_numbers: 4, max_value: 20, min_target: 10, max_target: 100}",
                             "task.num_train=40", "task.num_test=8", "bootstrap=priming", "bootstrap.examples=12",
                             "bootstrap.condition=wrong", "behaviors.classifier=current",
                             "behaviors.classifier_max_new_tokens=8")
    traces = pd.read_parquet(run / "iter_00" / "bootstrap.parquet")
    assert len(traces) == 12 and (traces["kind"] == "priming-wrong").all()
    assert all(r[-1]["content"].startswith("Using") or "numbers" in r[-1]["content"].lower() for r in traces["prompt"])
    first = traces["completion"].iloc[0][0]["content"]
    assert "not" in first and "work backwards" in first and first.splitlines()[-1].startswith("Answer:")
    boot = json.loads((run / "iter_00" / "model.done.json").read_text())
    assert boot["stats"]["steps"] > 0  # M0 was fine-tuned on them
    behaviors = pd.read_parquet(run / "iter_01" / "behaviors.parquet")
    assert behaviors["structural"].all() and len(behaviors) == history[1]["generate/count"]
    assert {f"behaviors/{b}_share" for b in BEHAVIORS} <= set(history[1])
    assert {f"llm_{b}" for b in BEHAVIORS} <= set(behaviors.columns)  # the classifier: M0, greedy, <count> parsed
    assert 0 <= history[1]["behaviors/llm_verification_agreement"] <= 1
    marker = json.loads((run / "iter_01" / "behaviors.done.json").read_text())
    assert marker["deps"] == ["iter_01/judgments", "iter_00/model"]  # the classifier's model is a declared read
    assert behavior_part(history[1]).startswith("behaviors % of samples (correct|incorrect): verification ")
    assert (run / "report" / "behaviors.png").exists()
    from pipeline.inspect import show_behaviors

    shown = show_behaviors(run, 2, None)
    assert "verification" in shown and "backward" in shown and shown.count("\n--- ") == 2
    assert "show backtracking" in show_behaviors(run, 2, None, "backtracking")
