"""SEELE's hint controller (Li et al. 2025, arXiv 2509.06923; ../shared/METHODS.md "SEELE"): each training problem
gets the first part of its reference solution as a hint, at a hinting rate p in [0, 1] chosen so that the model's
accuracy on it lands near a target a* (0.5: the most (correct, wrong) pairs, n(n-1)a(1-a) of n samples).

Per problem, before each round of sampling: the (p, accuracy) points seen so far (accuracy averaged over rounds at
the same p), plus the anchors (0, 0) and (1, 1) unless p = 0 or p = 1 was tried, are fitted with the
three-parameter logistic of item response theory, f(p) = b + (1 - b) / (1 + exp(-k (p + mu))), by bounded least
squares (scipy's curve_fit, "trf"), and f is inverted at a*. A fit that fails keeps the previous rate (and is
counted by the caller).

Status: the controller and the hint text, tested (tests/test_hints.py). Not yet wired into the pipeline: the
`curriculum=seele` prompts choice, its rounds inside the generate stage, same-hint pairs and its metrics are
issue 15's remaining work.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

BOUNDS = ([0.0, -1.0, 0.0], [50.0, 0.0, 0.99])  # k, mu, b (METHODS.md: the paper's sensible bounds)
START = (10.0, -0.5, 0.0)


@dataclass(frozen=True)
class Curve:
    """f(p) = b + (1 - b) / (1 + exp(-k (p + mu))): accuracy against hinting rate. b is the floor (guessing),
    -mu the rate of the steepest rise, k its steepness."""

    k: float
    mu: float
    b: float

    def __call__(self, p: float) -> float:
        return self.b + (1 - self.b) / (1 + math.exp(-self.k * (p + self.mu)))

    def rate_for(self, target: float) -> float:
        """The rate where f reaches `target`, clipped to [0, 1]; 0 when the floor already reaches it."""
        if self.b >= target:
            return 0.0
        if target >= 1 or self.k <= 0:
            return 1.0
        p = -self.mu - math.log((1 - self.b) / (target - self.b) - 1) / self.k
        return min(1.0, max(0.0, p))


def logistic3(p, k, mu, b):
    import numpy as np

    return b + (1 - b) / (1 + np.exp(-k * (np.asarray(p, dtype=float) + mu)))


def fit(observations: list[tuple[float, float]]) -> Curve | None:
    """The 3PL curve through a problem's (rate, accuracy) observations (one per round; rounds at the same rate are
    averaged) and the anchors (0, 0), (1, 1) where those rates were not tried; None when the fit fails."""
    import numpy as np
    from scipy.optimize import curve_fit

    by_rate: dict[float, list[float]] = {}
    for p, acc in observations:
        by_rate.setdefault(round(float(p), 6), []).append(float(acc))
    points = {p: sum(a) / len(a) for p, a in by_rate.items()}
    points.setdefault(0.0, 0.0)
    points.setdefault(1.0, 1.0)
    xs, ys = zip(*sorted(points.items()))
    try:
        with warnings.catch_warnings():  # "covariance could not be estimated": expected with 3-4 points
            warnings.simplefilter("ignore")
            params, _ = curve_fit(logistic3, np.array(xs), np.array(ys), p0=START, bounds=BOUNDS, method="trf",
                                  maxfev=2000)
    except (RuntimeError, ValueError):  # no convergence / degenerate input
        return None
    if not np.all(np.isfinite(params)):
        return None
    return Curve(*(float(v) for v in params))


def next_rate(observations: list[tuple[float, float]], target: float, previous: float) -> tuple[float, bool]:
    """The rate for the next round: the fitted curve inverted at `target`; (previous, True) when the fit fails."""
    curve = fit(observations)
    if curve is None:
        return previous, True
    return curve.rate_for(target), False


def solution_steps(solution: str) -> list[str]:
    """A reference solution's steps: its non-empty lines (the built-in tasks write "Step k: ..." lines and end with
    the answer line, which is the last step)."""
    return [line for line in solution.splitlines() if line.strip()]


def pessimistic_rate(n_steps: int) -> float:
    """Where a problem starts before any observation: every step but the last, (n - 1) / n."""
    return (n_steps - 1) / n_steps if n_steps > 0 else 0.0


def _count(rate: float, n: int) -> int:
    """round(rate x n), halves up (Python's round() would take 2.5 to 2)."""
    return min(n, max(0, math.floor(rate * n + 0.5)))


def hint(solution: str, rate: float, unit: str = "steps", tokenizer=None) -> str:
    """The first round(rate x |y|) parts of the solution y, counted in steps (lines) or in tokens of `tokenizer`."""
    if unit == "steps":
        steps = solution_steps(solution)
        return "\n".join(steps[: _count(rate, len(steps))])
    if unit == "tokens":
        if tokenizer is None:
            raise ValueError("hint unit 'tokens' needs the model's tokenizer")
        ids = tokenizer(solution, add_special_tokens=False)["input_ids"]
        return tokenizer.decode(ids[: _count(rate, len(ids))], skip_special_tokens=True)
    raise ValueError(f"hint unit: 'steps' or 'tokens', not {unit!r}")
