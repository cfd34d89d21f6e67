"""The statistics of a comparison: how sure a number is, and whether a difference is real.

Accuracies here are fractions in [0, 1] (or 0/1 flags per problem); the callers turn them into
percentage points.

- `binomial_se`: the standard error of one accuracy over n held-out problems, sqrt(p(1-p)/n).
- `mean_se`: mean and standard error over seeds (sample standard deviation / sqrt(n)).
- `paired_difference`: method A minus method B on the same problems, pooled over seeds: the
  difference, a 95 % interval from a paired bootstrap over problems, and McNemar's exact p-value.
- `verdict`: that difference in words; it is called real when its interval excludes 0.
- `ema`: the smoothed line drawn over per-step training curves.

The bootstrap resamples problems, not (seed, problem) rows: a problem is drawn with all of its
seeds, so a problem that is hard for every seed model counts as one draw. Its interval covers the
choice of held-out problems for these seed models; the spread between seed models is what
`mean_se` over seeds measures.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

BOOTSTRAP_SAMPLES = 10_000
LEVEL = 0.95


def binomial_se(p: float, n: int) -> float:
    """Standard error of an accuracy p measured on n problems (binomial: sqrt(p(1-p)/n))."""
    if n <= 0:
        raise ValueError("binomial_se needs at least one problem")
    return math.sqrt(p * (1.0 - p) / n)


def mean_se(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and standard error of the mean (sample standard deviation / sqrt(n)); the standard
    error is None for a single value."""
    if not values:
        raise ValueError("mean_se needs at least one value")
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, None
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)


def mcnemar_exact(a_only: int, b_only: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts: `a_only` problems that only A
    gets right, `b_only` that only B does (binomial test of a_only against n = a_only + b_only
    at 1/2). 1.0 when there is no discordant problem."""
    n = a_only + b_only
    if n == 0:
        return 1.0
    k = min(a_only, b_only)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2.0 * tail)


@dataclass(frozen=True)
class PairedDifference:
    """A minus B on the same problems, in accuracy fractions."""

    difference: float
    """Mean over seeds and problems of A's correctness minus B's."""
    low: float
    high: float
    """The bootstrap interval at `level`."""
    level: float
    a_only: int
    b_only: int
    """(seed, problem) rows only A / only B gets right."""
    p_value: float
    """McNemar's exact test on the pooled discordant rows."""
    problems: int
    seeds: int

    @property
    def real(self) -> bool:
        """Whether the interval excludes 0."""
        return self.low > 0 or self.high < 0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "real": self.real}


def _as_matrix(x: Sequence[Sequence[bool]] | Sequence[bool]) -> np.ndarray:
    arr = np.asarray(x, dtype=float)
    return arr[None, :] if arr.ndim == 1 else arr


def paired_difference(
    a: Sequence[Sequence[bool]] | Sequence[bool],
    b: Sequence[Sequence[bool]] | Sequence[bool],
    *,
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = 0,
    level: float = LEVEL,
) -> PairedDifference:
    """Paired comparison of two methods on the same held-out problems.

    `a[s][j]` / `b[s][j]`: whether method A / B got problem j right from seed model s (one list
    per seed, the problems in the same order; a flat list is one seed). The interval is the
    percentile interval of `samples` bootstrap resamples of the problems (each drawn with all
    its seeds), drawn from a generator seeded with `seed`, so the same inputs give the same
    interval.
    """
    ma, mb = _as_matrix(a), _as_matrix(b)
    if ma.shape != mb.shape or ma.size == 0:
        raise ValueError(f"paired_difference needs equal, non-empty shapes: {ma.shape}, {mb.shape}")
    seeds, problems = ma.shape
    per_problem = (ma - mb).mean(axis=0)  # the difference on each problem, averaged over seeds
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, problems, size=(samples, problems))
    boot = per_problem[draws].mean(axis=1)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(boot, [tail, 1.0 - tail])
    a_only = int(((ma == 1) & (mb == 0)).sum())
    b_only = int(((ma == 0) & (mb == 1)).sum())
    return PairedDifference(
        difference=float(per_problem.mean()),
        low=float(low),
        high=float(high),
        level=level,
        a_only=a_only,
        b_only=b_only,
        p_value=mcnemar_exact(a_only, b_only),
        problems=problems,
        seeds=seeds,
    )


def verdict(d: PairedDifference, a: str, b: str) -> str:
    """The difference in words, in percentage points, e.g. "IRPO is 4.0 points above STaR (95 %
    interval 1.2 to 6.8, McNemar p = 0.003): a real difference"."""
    pts = 100.0 * d.difference
    side = "above" if pts > 0 else "below"
    head = f"{a} is {abs(pts):.1f} points {side} {b}" if pts != 0 else f"{a} is level with {b}"
    detail = (
        f"({100 * d.level:.0f} % interval {100 * d.low:+.1f} to {100 * d.high:+.1f}, "
        f"McNemar p = {d.p_value:.2g})"
    )
    if d.real:
        return f"{head} {detail}: a real difference"
    return f"{head} {detail}: not distinguishable from noise (the interval includes 0)"


def ema(values: Sequence[float], alpha: float) -> list[float]:
    """Exponential moving average with weight `alpha` on the newest value, debiased at the
    start: point t is the average of values 0..t weighted by alpha (1 - alpha)^(t - i), so the
    first point is the first value and early points are not pulled towards it. An EMA of
    weight alpha averages over about 1 / alpha recent steps."""
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"ema: alpha must be in (0, 1], got {alpha}")
    out = []
    num = den = 0.0
    for v in values:
        num = (1.0 - alpha) * num + alpha * v
        den = (1.0 - alpha) * den + alpha
        out.append(num / den)
    return out
