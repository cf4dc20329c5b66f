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
