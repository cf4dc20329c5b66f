"""SEELE's hint controller (stages/hints.py): the 3PL fit and its inverse, anchors, failed fits, hint text."""

from __future__ import annotations

import math
import random

import pytest

from stages.hints import Curve, fit, hint, next_rate, pessimistic_rate, solution_steps

SOLUTION = "Step 1: 12 + 7 = 19\nStep 2: 19 * 2 = 38\nStep 3: 38 - 5 = 33\nAnswer: 33"


def test_curve_inverse_is_the_rate_where_the_curve_meets_the_target():
    c = Curve(k=12.0, mu=-0.6, b=0.1)
    for target in (0.3, 0.5, 0.75):
        assert c(c.rate_for(target)) == pytest.approx(target, abs=1e-9)
    assert Curve(k=12.0, mu=-0.6, b=0.5).rate_for(0.5) == 0.0  # the floor already reaches the target
    assert Curve(k=12.0, mu=-0.6, b=0.7).rate_for(0.5) == 0.0
    assert Curve(k=3.0, mu=-0.99, b=0.0).rate_for(0.99) == 1.0  # beyond p = 1: clipped
    assert Curve(k=50.0, mu=0.0, b=0.0).rate_for(0.2) == 0.0  # below p = 0: clipped


@pytest.mark.parametrize("true", [Curve(10.0, -0.5, 0.0), Curve(20.0, -0.3, 0.0), Curve(8.0, -0.7, 0.2)])
def test_a_known_curve_is_recovered_from_its_points(true):
    obs = [(p / 10, true(p / 10)) for p in range(11)]  # p = 0 and 1 observed: no anchors
    got = fit(obs)
    assert got is not None
    for p in (0.2, 0.5, 0.8):
        assert got(p) == pytest.approx(true(p), abs=0.02)
    assert got.rate_for(0.5) == pytest.approx(true.rate_for(0.5), abs=0.03)


def test_noisy_rounds_of_eight_samples_still_land_near_the_target():
    """Accuracy measured from 8 samples per round (binomial noise): over many simulated problems, the controller's
    rate after 4 rounds gives a true accuracy within 0.15 of the target on average."""
    rng = random.Random(0)
    errors = []
    for _ in range(30):
        true = Curve(rng.uniform(6, 20), -rng.uniform(0.2, 0.8), 0.0)
        rate, obs = pessimistic_rate(4), []
        for _ in range(4):
            acc = sum(rng.random() < true(rate) for _ in range(8)) / 8
            obs.append((rate, acc))
            rate, failed = next_rate(obs, 0.5, rate)
            assert not failed
        errors.append(abs(true(rate) - 0.5))
    assert sum(errors) / len(errors) < 0.15


def test_anchors_are_added_only_where_that_rate_was_not_tried():
    # p = 1 tried and failed every time (the hint does not help): no (1, 1) anchor; the curve sits as low at p = 1
    # as its bounds allow (mu >= -1 keeps f(1) >= 0.5) and the controller asks for the whole solution
    stuck = fit([(0.5, 0.0), (1.0, 0.0), (1.0, 0.0)])
    assert stuck is not None and stuck(1.0) == pytest.approx(0.5, abs=1e-3) and stuck.rate_for(0.5) > 0.99
    # without the p = 1 observation the anchor (1, 1) pulls the curve up there: a rate between the two
    anchored = fit([(0.5, 0.0)])
    assert anchored is not None and anchored(1.0) > 0.95 and 0.55 < anchored.rate_for(0.5) < 0.95
    # rounds at the same rate are averaged into one point
    assert fit([(0.5, 0.0), (0.5, 1.0)]) == fit([(0.5, 0.5)])


def test_flat_observations_give_a_valid_rate():
    always = fit([(0.25, 1.0), (0.5, 1.0), (0.75, 1.0)])  # solved even with little hint
    assert always is not None and always.rate_for(0.5) < 0.3
    never = next_rate([(0.75, 0.0), (0.75, 0.0)], 0.5, previous=0.75)
    assert never[1] is False and never[0] > 0.75  # more hint


def test_a_failed_fit_keeps_the_previous_rate():
    # a round whose accuracy is not a number (e.g. no sample came back): scipy refuses the data
    assert next_rate([(0.5, float("nan"))], 0.5, previous=0.4) == (0.4, True)


def test_hints_by_steps_and_by_tokens(tiny_model):
    assert solution_steps(SOLUTION)[-1] == "Answer: 33" and len(solution_steps(SOLUTION + "\n\n")) == 4
    assert hint(SOLUTION, 0.0) == "" and hint(SOLUTION, 1.0) == SOLUTION
    assert hint(SOLUTION, pessimistic_rate(4)) == "Step 1: 12 + 7 = 19\nStep 2: 19 * 2 = 38\nStep 3: 38 - 5 = 33"
    assert hint(SOLUTION, 0.5) == "Step 1: 12 + 7 = 19\nStep 2: 19 * 2 = 38"
    assert hint(SOLUTION, 0.375) == "Step 1: 12 + 7 = 19\nStep 2: 19 * 2 = 38"  # 1.5 steps: halves round up
    assert pessimistic_rate(1) == 0.0 and math.isclose(pessimistic_rate(5), 0.8)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    n = len(tok(SOLUTION, add_special_tokens=False)["input_ids"])
    half = hint(SOLUTION, 0.5, unit="tokens", tokenizer=tok)
    assert SOLUTION.startswith(half) and 0 < len(tok(half, add_special_tokens=False)["input_ids"]) <= (n + 1) // 2 + 1
    assert hint(SOLUTION, 1.0, unit="tokens", tokenizer=tok) == SOLUTION
    with pytest.raises(ValueError, match="needs the model's tokenizer"):
        hint(SOLUTION, 0.5, unit="tokens")
    with pytest.raises(ValueError, match="'steps' or 'tokens'"):
        hint(SOLUTION, 0.5, unit="words")


# --------------------------------------------------------------------------- SEELE in the pipeline

import json  # noqa: E402

from conftest import TINY, compose_config, run_crashing, run_in_process  # noqa: E402

from pipeline.config import ConfigError, stage_configs  # noqa: E402
from pipeline.graph import plan, validate  # noqa: E402
from stages.hints import CurriculumConfig, hinted_pairs, seele_rounds  # noqa: E402
from stages.pairs import PairsConfig  # noqa: E402
from stages.verify import Verdict  # noqa: E402

PROBLEMS = [{"prompt_id": f"p{i}", "messages": [{"role": "user", "content": f"problem {i}"}],
             "solution": SOLUTION} for i in range(40)]


class Student:
    """A simulated model for the controller: it answers problem i correctly with probability true_i(hint rate), the
    rate read back from the hint it is given (steps of SOLUTION shown / 4); draws are seeded by (problem, round,
    sample), so two runs of the same rounds give the same answers. It records which rounds it was asked for."""

    def __init__(self, n: int, fail_at_round: int | None = None):
        self.n, self.fail_at_round, self.rounds = n, fail_at_round, []
        self.curves = {p["prompt_id"]: Curve(random.Random(p["prompt_id"]).uniform(6, 20),
                                             -random.Random(p["prompt_id"] + "mu").uniform(0.2, 0.8), 0.0)
                       for p in PROBLEMS}

    def __call__(self, prompts: list[dict], r: int) -> list[dict]:
        if r == self.fail_at_round:
            raise KeyboardInterrupt("killed in the middle of the rounds")
        self.rounds.append(r)
        out = []
        for p in prompts:
            shown = p["messages"][-1]["content"] if p["messages"][-1]["role"] == "assistant" else ""
            rate = len(solution_steps(shown)) / 4
            for s in range(self.n):
                ok = random.Random(f"{p['prompt_id']}:{r}:{s}").random() < self.curves[p["prompt_id"]](rate)
                rest = SOLUTION[len(shown):] if ok else "\nAnswer: 0"
                out.append({"prompt_id": p["prompt_id"], "sample_idx": s, "completion": rest, "num_tokens": 5,
                            "finish_reason": "stop"})
        return out


def _check(items):
    return [Verdict("correct" if text.rstrip().endswith("Answer: 33") else "incorrect", 0.0, "") for _, text in items]


def test_seele_rounds_steer_each_problem_toward_the_target():
    records, stats = seele_rounds(PROBLEMS, {}, CurriculumConfig(kind="seele", rounds=4), 8, Student(8), _check)
    assert len(records) == 40 * 4 * 8 and len({(r["prompt_id"], r["sample_idx"]) for r in records}) == len(records)
    for r in records:  # the sample is hint + continuation, and the hint is the start of the solution
        assert r["completion"] == r["hint"] + r["continuation"] and SOLUTION.startswith(r["hint"])
    first = [r for r in records if r["round"] == 1]
    assert {r["hint_rate"] for r in first} == {0.75}  # the pessimistic start: every step but the last
    assert stats["round_4_tracking_error"] < stats["round_1_tracking_error"]
    assert abs(stats["round_4_accuracy"] - 0.5) < 0.2 and stats["fit_failures"] == 0
    assert 0 < stats["next_rate_mean"] < 1 and len({r["next_rate"] for r in records if r["prompt_id"] == "p0"}) == 1


def test_a_problem_seen_before_starts_from_its_carried_rate():
    records, stats = seele_rounds(PROBLEMS[:2], {"p0": 0.25}, CurriculumConfig(kind="seele", rounds=1), 2, Student(2),
                                  _check)
    assert {r["prompt_id"]: r["hint_rate"] for r in records} == {"p0": 0.25, "p1": 0.75} and stats["carried"] == 1


def test_resume_in_the_middle_of_the_rounds_samples_only_the_rounds_not_finished(tmp_path):
    cfg = CurriculumConfig(kind="seele", rounds=4)
    problems = PROBLEMS[:12]
    whole, _ = seele_rounds(problems, {}, cfg, 4, Student(4), _check)
    with pytest.raises(KeyboardInterrupt):
        seele_rounds(problems, {}, cfg, 4, Student(4, fail_at_round=3), _check, scratch=tmp_path / "rounds")
    assert sorted(p.name for p in (tmp_path / "rounds").iterdir()) == ["round_1.json", "round_2.json"]
    again = Student(4)
    resumed, stats = seele_rounds(problems, {}, cfg, 4, again, _check, scratch=tmp_path / "rounds")
    assert again.rounds == [3, 4] and stats["resumed_rounds"] == 2
    assert resumed == whole  # the same samples, rates and carried rates as the uninterrupted run


def _judged(pid, hint_text, rate, outcomes, base=0):
    return [{"prompt_id": pid, "sample_idx": base + k, "hint": hint_text, "hint_rate": rate, "status": "correct" if ok
             else "incorrect", "reward": float(ok), "completion": hint_text + f"\n... {pid} {base + k} {ok}"}
            for k, ok in enumerate(outcomes)]


def test_pairs_are_made_only_within_one_hint_with_the_bare_problem_as_prompt():
    prompts = [{"prompt_id": p, "messages": [{"role": "user", "content": p}], "solution": SOLUTION}
               for p in ("a", "b", "c")]
    h1, h2 = hint(SOLUTION, 0.25), hint(SOLUTION, 0.5)
    judged = (_judged("a", h1, 0.25, [True, False], 1000) + _judged("a", h2, 0.5, [True, False], 2000)
              + _judged("b", h1, 0.25, [True, True], 1000)  # all correct: no loser under that hint
              + _judged("c", "", 0.0, [True, False], 1000))  # no hint: plain pairs
    cfg = PairsConfig(pairs_per_prompt=2, include_gold=False)
    pairs, stats = hinted_pairs(prompts, judged, cfg)
    assert {p["prompt_id"] for p in pairs} == {"a", "c"} and stats["skipped_no_loser"] == 1
    for p in pairs:
        assert p["prompt"] == [{"role": "user", "content": p["prompt_id"]}]  # the bare problem
        c, r = p["chosen"][0]["content"], p["rejected"][0]["content"]
        assert c.startswith(p["hint"]) and r.startswith(p["hint"]) and c != r
        assert (p["chosen_sample_idx"] // 1000) == (p["rejected_sample_idx"] // 1000)  # one round's hint
    assert {p["hint"] for p in pairs if p["prompt_id"] == "a"} == {h1, h2}  # K = 2 spread over a's two hints
    assert stats["hinted_pairs"] == 2 and stats["unhinted_pairs"] == 1 and stats["prompts_with_pairs"] == 2
    gold, _ = hinted_pairs(prompts, judged, PairsConfig(pairs_per_prompt=4, include_gold=True))
    assert all(p["chosen"][0]["content"] == SOLUTION for p in gold if p["chosen_sample_idx"] == -1)
    assert len([p for p in gold if p["prompt_id"] == "a"]) == 4  # K per problem, not per hint


@pytest.mark.parametrize("overrides,message", [
    (["method=self_rewarding", "curriculum=seele"], "curriculum=seele needs prompts=task"),
    (["method=irpo", "curriculum=seele", "judge=llm"], "curriculum=seele needs judge=verify"),
    (["method=seele", "pairs=correct"], "curriculum=seele needs pairs=irpo"),
    (["method=seele", "thought=generic"], "curriculum=seele needs thought=none"),
    (["method=irpo_refine", "curriculum=seele"], "curriculum=seele needs refine=none"),
    (["method=seele", "curriculum.target=1"], r"curriculum.target must be in \(0, 1\)"),
    (["method=seele", "curriculum.unit=words"], "curriculum.unit must be one of"),
])
def test_seele_config_is_checked_before_any_model_loads(overrides, message):
    with pytest.raises(ConfigError, match=message):
        validate(compose_config(*overrides))


def test_seele_is_a_preset_and_a_curriculum_choice_with_the_same_stages():
    preset, choice = compose_config("method=seele"), compose_config("method=irpo", "curriculum=seele")
    assert stage_configs(preset).curriculum == stage_configs(choice).curriculum == CurriculumConfig(kind="seele")
    assert stage_configs(compose_config("method=irpo")).curriculum is None
    keys = plan(preset)
    assert keys[(2, "generations")].deps == ["iter_02/prompts", "iter_01/model", "iter_01/generations"]  # carried
    assert keys[(1, "generations")].config["curriculum"]["rounds"] == 4


def test_a_task_without_reference_solutions_is_refused(tmp_path, cache_dir):
    from pipeline.loop import run

    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps({"question": f"{i} + 1?", "answer": str(i + 1)}) + "\n" for i in range(30)))
    cfg = compose_config("method=seele", "task=file", f"task.source={data}", "task.test_split=null", "task.test_size=5",
                         "logger=none")
    with pytest.raises(ConfigError, match="without a reference solution.*task.solution_field"):
        run(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "iter_00").exists()


def test_the_solution_check_follows_the_iterations_that_sample_with_hints(tmp_path, cache_dir):
    """The check covers every planned iteration: a schedule that turns SEELE on in iteration 2 is refused before
    iteration 1 trains; an evaluation-only run (iterations=0) samples no hints and is not refused."""
    from pipeline.loop import run

    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps({"question": f"{i} + 1?", "answer": str(i + 1)}) + "\n" for i in range(30)))
    task = ["task=file", f"task.source={data}", "task.test_split=null", "task.test_size=5", "logger=none",
            f"paths.cache_dir={cache_dir}"]
    cfg = compose_config("method=seele", *task, *TINY, "+schedule.curriculum.kind=[none,seele]", "iterations=2")
    with pytest.raises(ConfigError, match="without a reference solution"):
        run(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "iter_00").exists()
    history = run(compose_config("method=seele", *task, *TINY, "iterations=0"), tmp_path / "eval-only")
    assert [h["iteration"] for h in history] == [0] and "eval/accuracy" in history[0]


def test_seele_end_to_end_on_the_tiny_model_resumes_inside_the_rounds(tmp_path, cache_dir, monkeypatch, capsys):
    """A run on the tiny model killed in its third round of hinted samples, then rerun: the rerun samples only the
    rounds that were not finished; the run's samples, pairs, metrics, summary line, report and inspect carry the
    hints."""
    import pandas as pd

    from pipeline.inspect import show_hints

    run = tmp_path / "run"
    args = ("method=seele", "logger=none")
    run_crashing(run, cache_dir, monkeypatch, "iter 1 generate round 3", *args)
    assert sorted(p.name for p in run.glob("iter_01/generations.partial-*/*")) == ["round_1.json", "round_2.json"]
    m = run_in_process(run, cache_dir, *args)[1]
    gen = json.loads((run / "iter_01" / "generations.done.json").read_text())["stats"]
    assert gen["resumed_rounds"] == 2 and "hints: accuracy by round" in capsys.readouterr().out
    assert not list(run.glob("iter_01/*.partial-*"))  # the work in progress is gone once the stage finished
    g = pd.read_parquet(run / "iter_01" / "generations.parquet")
    assert sorted(g["round"].unique()) == [1, 2, 3, 4] and (g["completion"] == g["hint"] + g["continuation"]).all()
    pairs = pd.read_parquet(run / "iter_01" / "pairs.parquet")
    assert len(pairs) > 0
    for _, r in pairs.iterrows():
        assert r["chosen"][0]["content"].startswith(r["hint"]) and r["rejected"][0]["content"].startswith(r["hint"])
    assert {"generate/round_4_accuracy", "generate/next_rate_mean", "generate/fit_failures", "pairs/prompt_yield"} <= set(m)
    assert (run / "report" / "hints.png").exists() and (run / "report" / "hint_rates.png").exists()
    assert show_hints(run, 2, None).count("round 4: rate") == 2
