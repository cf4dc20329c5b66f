"""The improvement cycle with tool feedback (stages/refine.py): the feedback texts (calculator, checker verdicts, code
failures), the round loop's stopping rules, both pair types, the config checks, and both presets end to end on the
tiny model with a crash in the middle of a refine stage resumed by rerunning."""

from __future__ import annotations

import glob
import json
import re

import pandas as pd
import pytest

from conftest import compose_config, run_crashing, run_in_process
from pipeline.config import ConfigError, stage_configs
from stages.generate import GenerateConfig
from stages.pairs import PairsConfig
from stages.refine import DEFAULT_TEMPLATE, RefineConfig, feedback_kind, refine_pairs, run_rounds
from stages.tasks import LoadedTask, Problem
from stages.verify import VerifyConfig, check_answer, check_steps

# --------------------------------------------------------------------------- feedback texts


@pytest.mark.parametrize("text, expected", [
    ("Step 1: 7 + 6 = 12\nAnswer: 12", 'the step "7 + 6 = 12" is wrong: 7 + 6 = 13'),
    ("3 x 4 = 12, then 12 - 5 = 8", 'the step "12 - 5 = 8" is wrong: 12 - 5 = 7'),  # the first wrong one
    ("2 + 3 * 4 = 20", 'the step "2 + 3 * 4 = 20" is wrong: 2 + 3 * 4 = 14'),  # precedence
    ("10 / 4 = 3", 'the step "10 / 4 = 3" is wrong: 10 / 4 = 2.5'),
    ("1,200 - 300 = 800", 'the step "1,200 - 300 = 800" is wrong: 1,200 - 300 = 900'),
    ("(12 - 4) / 2 = 4 and 10 / 4 = 2.5 and $1,200 - $300 = $900", None),  # all right
    ("9 ÷ 3 = 3 and 4 × 5 = 20", None),
    ("no steps here. Answer: 5", None),
    ("version 1.2 + 3 = 4.2", None),  # right
    ("the 5 / 0 = 1 step", None),  # not a number: skipped, not a crash
])
def test_calculator_names_the_first_wrong_step(text, expected):
    assert check_steps(text) == expected


def test_answer_feedback_never_shows_the_gold_answer_to_the_model():
    p = Problem("p", "What is 7 + 6?", "13")
    v = check_answer(p, "7 + 6 = 12\nAnswer: 12", VerifyConfig())
    assert "expected 13" in v.feedback and "13" in v.shown  # the calculator's own result of the wrong step
    v = check_answer(p, "I think so.\nAnswer: 12", VerifyConfig())
    assert "expected 13" in v.feedback and "13" not in v.shown and v.shown == "the final answer 12 is wrong"
    v = check_answer(p, "7 + 6 = 12, so it is twelve", VerifyConfig())
    assert v.status == "unparseable" and v.shown.startswith("no final answer found") and "the step" in v.shown
    assert feedback_kind(v.status, v.shown) == "wrong_step"


@pytest.mark.parametrize("status, feedback, kind", [
    ("correct", "correct: 5", "correct"), ("unparseable", 'no final answer found: end with a line "Answer: <answer>"',
                                           "no_answer"),
    ("incorrect", "the final answer 12 is wrong", "wrong_answer"),
    ("incorrect", "failed: assert add(2, 3) == 5", "test_failed"),
    ("incorrect", "NameError: name 'x' is not defined (while running the test: assert f(1) == 2)", "error"),
    ("unparseable", "SyntaxError: invalid syntax (line 2)", "error"),
    ("incorrect", "timed out after 5 s", "timeout"),
    ("unparseable", "no code found: put the function in a ```python code block", "no_answer"),
])
def test_feedback_kinds(status, feedback, kind):
    assert feedback_kind(status, feedback) == kind


def test_code_feedback_is_the_failing_test():
    from stages.sandbox import _mode
    from stages.tasks import TaskConfig, load_task

    task = load_task(TaskConfig(name="code", source="code", sandbox={"weaker_isolation": _mode() != "bwrap"}))
    p = task.test[0]
    entry = json.loads(p.answer)["entry_point"]
    v = task.check(p, f"```python\ndef {entry}(*args, **kwargs):\n    return None\n```")
    assert v.status == "incorrect" and v.shown == v.feedback and feedback_kind(v.status, v.shown) == "test_failed"
    assert v.shown.startswith("failed: assert")


# --------------------------------------------------------------------------- the round loop

PROBLEMS = [Problem("easy", "What is 2 + 3? easy", "5"), Problem("fix", "What is 4 + 4? fixable", "8"),
            Problem("stuck", "What is 7 + 1? stubborn", "8")]
MODEL = "py:tests.fake_models:reviser"


def _task() -> LoadedTask:
    return LoadedTask(name="sums", train=PROBLEMS, test=[], checker=check_answer)


def _prompts() -> list[dict]:
    return [{"prompt_id": p.id, "messages": [{"role": "user", "content": p.question}], "solution": None}
            for p in PROBLEMS]


def _rounds(rounds=3, keep=2, patience=1):
    from stages.generate import generate

    task, prompts = _task(), _prompts()
    gens, _ = generate(MODEL, prompts, GenerateConfig(num_samples=2))
    verdicts = task.check_all([(task.problem(g["prompt_id"]), g["completion"]) for g in gens])
    first = [{**g, "verdict": v} for g, v in zip(gens, verdicts)]
    judged = [{**g, "status": v.status, "reward": v.reward, "score": v.score, "feedback": v.feedback,
               "feedback_shown": v.shown} for g, v in zip(gens, verdicts)]
    attempts, stats = run_rounds(MODEL, prompts, first, task, VerifyConfig(), GenerateConfig(num_samples=2),
                                 rounds=rounds, keep=keep, patience=patience, template=DEFAULT_TEMPLATE, desc="test")
    return prompts, judged, attempts, stats


def test_rounds_stop_when_solved_or_stalled():
    _, _, attempts, stats = _rounds(rounds=3, patience=1)
    df = pd.DataFrame(attempts)
    assert set(df[df["round"] > 0]["prompt_id"]) == {"fix", "stuck"}  # the solved prompt is never revised
    assert stats["solved_by_round_0"] == pytest.approx(1 / 3) and stats["solved_by_round_1"] == pytest.approx(2 / 3)
    # round 1: both unsolved prompts; then "fix" is solved and "stuck" did not improve for patience=1 round
    assert stats["round_1_prompts"] == 2 and stats["round_2_prompts"] == 0 and stats["stopped_stalled"] == 1
    assert stats["solved_by_round_3"] == pytest.approx(2 / 3) and stats["solved_by_refine"] == 1


def test_patience_keeps_a_prompt_going_and_keep_bounds_the_threads():
    _, _, attempts, stats = _rounds(rounds=3, keep=2, patience=3)
    assert [stats[f"round_{r}_prompts"] for r in (1, 2, 3)] == [2, 1, 1]
    stuck = pd.DataFrame([a for a in attempts if a["prompt_id"] == "stuck"])
    # keep=2 distinct attempts return each round, 2 revisions each: the unchanged copies add no new text
    assert stuck.groupby("round").size().tolist() == [2, 4, 4, 4]
    _, _, attempts, _ = _rounds(rounds=1, keep=1, patience=3)
    assert sum(a["round"] == 1 and a["prompt_id"] == "stuck" for a in attempts) == 2  # one thread x 2 revisions


def test_every_attempt_links_to_the_feedback_it_was_shown():
    _, _, attempts, _ = _rounds(rounds=2, patience=2)
    by_key = {(a["prompt_id"], a["round"], a["attempt"]): a for a in attempts}
    for a in attempts:
        if a["round"] == 0:
            assert (a["parent_round"], a["parent_attempt"], a["followup"]) == (-1, -1, "")
            continue
        parent = by_key[(a["prompt_id"], a["parent_round"], a["parent_attempt"])]
        assert parent["round"] < a["round"] and parent["status"] != "correct"
        assert parent["feedback_shown"] in a["followup"] and _task().problem(a["prompt_id"]).question in a["followup"]
        assert "expected" not in a["followup"]
    fixed = [a for a in attempts if a["prompt_id"] == "fix" and a["status"] == "correct"]
    assert fixed and all(by_key[("fix", a["parent_round"], a["parent_attempt"])]["feedback_kind"] == "wrong_step"
                         for a in fixed)


# --------------------------------------------------------------------------- pairs


def test_first_attempt_and_retry_pairs():
    prompts, judged, attempts, _ = _rounds(rounds=2, patience=1)
    pairs, stats = refine_pairs(prompts, judged, attempts, PairsConfig(pairs_per_prompt=4), RefineConfig(rounds=2))
    first = [p for p in pairs if p["pair_type"] == "first_attempt"]
    retry = [p for p in pairs if p["pair_type"] == "retry"]
    round0 = {a["completion"] for a in attempts if a["round"] == 0}
    # first attempts: the correct revision re-posed as an answer to the bare problem; losers only failed first attempts
    assert first and all(len(p["prompt"]) == 1 and p["rejected"][0]["content"] in round0 for p in first)
    assert {p["prompt_id"] for p in first} == {"fix"} and all(p["round"] == 1 for p in first)
    assert all(p["feedback_kind"] == "wrong_step" for p in first)
    # retry: the thread is the prompt; the rejected side is the failed attempt copied unchanged; no ties
    assert retry and all(len(p["prompt"]) == 3 and p["prompt"][1]["content"] == p["rejected"][0]["content"]
                         and p["chosen"][0]["content"] != p["rejected"][0]["content"] for p in retry)
    assert all(p["chosen"][0]["content"].endswith("Answer: 8") and p["round"] == 1 for p in retry)
    assert stats["first_attempt_pairs"] == len(first) and stats["retry_pairs"] == len(retry) <= len(first)
    assert stats["retry_feedback_wrong_step"] == len(retry) and stats["refined_winners"] == len(first)


def test_retry_cap_and_selection():
    prompts, judged, attempts, _ = _rounds(rounds=1, patience=1)
    full, _ = refine_pairs(prompts, judged, attempts, PairsConfig(pairs_per_prompt=4),
                           RefineConfig(rounds=1, retry_ratio=None))
    n_first = sum(p["pair_type"] == "first_attempt" for p in full)
    n_retry = sum(p["pair_type"] == "retry" for p in full)
    assert n_retry == 2 and n_first == 2
    half, stats = refine_pairs(prompts, judged, attempts, PairsConfig(pairs_per_prompt=4),
                               RefineConfig(rounds=1, retry_ratio=0.5))
    assert stats["retry_pairs"] == 1 and stats["retry_capped"] == 1
    only, stats = refine_pairs(prompts, judged, attempts, PairsConfig(pairs_per_prompt=4),
                               RefineConfig(rounds=1, pairs=["retry"]))
    assert {p["pair_type"] for p in only} == {"retry"} and stats["retry_pairs"] == 2  # no first-attempt pairs: no cap
    first, _ = refine_pairs(prompts, judged, attempts, PairsConfig(pairs_per_prompt=4),
                            RefineConfig(rounds=1, pairs=["first_attempt"]))
    assert {p["pair_type"] for p in first} == {"first_attempt"}


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize("overrides, message", [
    (["method=tpo", "refine=feedback"], "thoughts"),
    (["method=irpo_refine", "judge=llm"], "judge=verify"),
    (["method=irpo_refine", "pairs=correct"], "pairs=irpo"),
    (["method=irpo_refine", "refine.template=Try again."], "{feedback}"),
    (["method=irpo_refine", "refine.pairs=[other]"], "refine.pairs"),
    (["eval.refine_rounds=2"], "eval.refine_rounds"),
    (["eval=refine", "eval.refine_rounds=0"], "eval.refine_rounds"),
])
def test_bad_refine_settings_fail_before_any_model_loads(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("{", r"\{").replace("}", r"\}")):
        stage_configs(compose_config(*overrides))


def test_a_bad_refine_template_names_refine_template_at_iteration_0():
    """The run checks iteration 0 (M0's evaluation) first, whose eval.refine_template is refine.template: the
    message named only eval.refine_template, a key the user never set."""
    from pipeline.graph import validate

    with pytest.raises(ConfigError, match=re.escape("eval.refine_template (= refine.template) must contain")):
        validate(compose_config("method=irpo_refine", "refine.template=Try again."))


def test_presets_are_compositions():
    s = stage_configs(compose_config("method=irpo_refine"))
    assert s.refine.rounds == 2 and "refine" in s.eval.measures and s.eval.refine_template == s.refine.template
    plain = stage_configs(compose_config("eval=refine"))  # inference only: training stays plain IRPO
    assert plain.refine.rounds == 0 and plain.eval.refine_rounds == 2 and plain.pairs.rule == "irpo"


# --------------------------------------------------------------------------- end to end on the tiny model


def test_irpo_refine_resumes_after_a_crash_in_a_refine_round(tmp_path, cache_dir, monkeypatch, capsys):
    """A crash in round 2 of the refine stage loses only that stage: the rerun reuses prompts, samples and
    judgments and gives the same attempts and pairs as a run that never crashed."""
    from pipeline.inspect import show_refine
    from wandb_reader import history as history_of

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    args = ("method=irpo_refine", "refine.patience=2")
    clean = run_in_process(tmp_path / "clean", cache_dir, *args)
    run_crashing(tmp_path / "crashed", cache_dir, monkeypatch, "iter 1 refine round 2", *args)
    it = tmp_path / "crashed" / "iter_01"
    assert (it / "judgments.done.json").exists() and not (it / "refinements.done.json").exists()
    before = {p: p.stat().st_mtime_ns for p in it.glob("*.done.json")}
    resumed = run_in_process(tmp_path / "crashed", cache_dir, *args)
    assert all(p.stat().st_mtime_ns == t for p, t in before.items())  # nothing finished was recomputed
    for name in ("refinements", "pairs"):
        a = pd.read_parquet(tmp_path / "clean" / "iter_01" / f"{name}.parquet")
        b = pd.read_parquet(it / f"{name}.parquet")
        pd.testing.assert_frame_equal(a, b)
    m = resumed[1]
    assert m == {**clean[1], **{k: m[k] for k in m if k.endswith("seconds") or k.endswith("tokens_per_s")}}
    refinements = pd.read_parquet(it / "refinements.parquet")
    assert set(refinements["round"]) == {0, 1, 2} and m["refine/round_2_prompts"] > 0
    pairs = pd.read_parquet(it / "pairs.parquet")
    assert set(pairs["pair_type"]) <= {"first_attempt", "retry"} and {"round", "feedback_kind"} <= set(pairs.columns)
    assert m["pairs/first_attempt_pairs"] + m["pairs/retry_pairs"] == m["pairs/count"]
    assert {"eval/accuracy_round_0", "eval/accuracy_round_2"} <= set(m)
    out = capsys.readouterr().out
    assert "refine solved" in out and "after 2 feedback rounds" in out
    assert "[round 1 attempt" in show_refine(tmp_path / "crashed", 1, 1)
    rows = [r for f in glob.glob(str(tmp_path / "crashed" / "wandb" / "offline-run-*" / "run-*.wandb"))
            for r in history_of(f)]  # the crashed attempt's W&B file, then the resumed one's
    assert any("refine/solved_by_round_2" in r for r in rows) and any("eval/accuracy_round_2" in r for r in rows)


def test_refine_at_evaluation_only_resumes_after_a_crash_in_its_round(tmp_path, cache_dir, monkeypatch):
    """Inference-only refinement (training stays plain IRPO); a crash in the evaluation's feedback round loses only
    the evaluation."""
    run_crashing(tmp_path / "run", cache_dir, monkeypatch, "eval M1 refine round 1", "eval=refine", "logger=none")
    it = tmp_path / "run" / "iter_01"
    before = {p: p.stat().st_mtime_ns for p in it.glob("*.done.json")}
    assert (it / "model.done.json") in before and (it / "eval.done.json") not in before
    history = run_in_process(tmp_path / "run", cache_dir, "eval=refine", "logger=none")
    assert all(p.stat().st_mtime_ns == t for p, t in before.items())
    assert not (it / "refinements.parquet").exists()
    assert set(pd.read_parquet(it / "pairs.parquet")["pair_type"]) == {"actor"}
    held = pd.read_parquet(it / "eval.parquet")
    assert {"refine_solved_round", "refine_revisions"} <= set(held.columns)
    for m in history:
        acc = [m[f"eval/accuracy_round_{r}"] for r in range(3)]
        assert acc[0] == m["eval/accuracy"] and acc == sorted(acc)
