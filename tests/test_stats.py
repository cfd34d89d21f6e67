"""irpo.stats on small cases computed by hand."""

from __future__ import annotations

import math

import pytest

from irpo.stats import (
    binomial_se,
    ema,
    mcnemar_exact,
    mean_se,
    paired_difference,
    verdict,
)


def test_binomial_se() -> None:
    assert binomial_se(0.5, 100) == 0.05
    assert binomial_se(0.2, 400) == pytest.approx(0.02)  # sqrt(0.16 / 400)
    assert binomial_se(1.0, 10) == 0.0
    with pytest.raises(ValueError):
        binomial_se(0.5, 0)


def test_mean_and_standard_error_over_seeds() -> None:
    mean, se = mean_se([0.3, 0.4, 0.5])
    # variance ((0.1)^2 + 0 + (0.1)^2) / 2 = 0.01, sd 0.1, se 0.1 / sqrt(3)
    assert mean == pytest.approx(0.4)
    assert se == pytest.approx(0.1 / math.sqrt(3))
    assert mean_se([0.25]) == (0.25, None)
    with pytest.raises(ValueError):
        mean_se([])


def test_mcnemar_exact() -> None:
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(1, 5) == 14 / 64  # 2 (C(6,0) + C(6,1)) / 2^6
    assert mcnemar_exact(5, 1) == 14 / 64
    assert mcnemar_exact(0, 6) == 2 / 64
    assert mcnemar_exact(2, 8) == 2 * 56 / 1024  # C(10,0) + C(10,1) + C(10,2) = 56
    assert mcnemar_exact(3, 3) == 1.0  # 2 x 42/64 capped at 1


def test_ema_is_a_debiased_weighted_average() -> None:
    # weights alpha (1 - alpha)^(t - i): 1 | 0.25, 0.5 | 0.125, 0.25, 0.5
    assert ema([1.0, 2.0, 3.0], 0.5) == pytest.approx([1.0, 5 / 3, 17 / 7])
    assert ema([4.0, -1.0, 7.0], 1.0) == [4.0, -1.0, 7.0]
    assert ema([2.0] * 5, 0.1) == pytest.approx([2.0] * 5)
    assert ema([], 0.1) == []
    with pytest.raises(ValueError):
        ema([1.0], 0.0)


def test_paired_difference_with_a_constant_difference() -> None:
    d = paired_difference([True] * 4, [False] * 4)
    assert (d.difference, d.low, d.high) == (1.0, 1.0, 1.0)
    assert (d.a_only, d.b_only, d.p_value, d.problems, d.seeds) == (4, 0, 2 / 16, 4, 1)
    assert d.real
    same = paired_difference([[True, False], [False, True]], [[True, False], [False, True]])
    assert (same.difference, same.low, same.high, same.p_value, same.real) == (
        0.0,
        0.0,
        0.0,
        1.0,
        False,
    )


def test_paired_difference_pools_seeds_per_problem() -> None:
    a = [[1, 0, 1], [1, 1, 1]]
    b = [[0, 0, 1], [0, 1, 1]]
    d = paired_difference(a, b)
    # per problem, averaged over the two seeds: [1, 0, 0]. A resample's mean is 0 with
    # probability (2/3)^3 = 0.30 and 1 with probability 1/27 = 0.037, so both 2.5 % tails
    # fall on those values.
    assert d.difference == pytest.approx(1 / 3)
    assert (d.low, d.high) == (0.0, 1.0)
    assert (d.a_only, d.b_only, d.p_value, d.problems, d.seeds) == (2, 0, 0.5, 3, 2)
    assert not d.real


def test_paired_difference_interval_excludes_zero() -> None:
    # 18 of 20 problems only A solves, 2 both solve: a resample's mean is Binomial(20, 0.9) / 20;
    # P(X <= 14) = 0.011 and P(X <= 15) = 0.043 put the 2.5 % point at 15/20, and
    # P(X <= 19) = 1 - 0.9^20 = 0.88 puts the 97.5 % point at 20/20.
    a = [True] * 20
    b = [False] * 18 + [True] * 2
    d = paired_difference(a, b, seed=3)
    assert (d.difference, d.low, d.high) == (0.9, 0.75, 1.0)
    assert (d.a_only, d.b_only) == (18, 0)
    assert d.p_value == 2 / 2**18
    assert d.real
    assert paired_difference(a, b, seed=3) == d  # seeded: the same interval every time
    assert verdict(d, "IRPO", "STaR") == (
        "IRPO is 90.0 points above STaR (95 % interval +75.0 to +100.0, McNemar p = 7.6e-06): "
        "a real difference"
    )


def test_verdict_when_the_interval_includes_zero() -> None:
    d = paired_difference([[1, 0, 1], [1, 1, 1]], [[0, 0, 1], [0, 1, 1]])
    assert verdict(d, "STaR", "IRPO") == (
        "STaR is 33.3 points above IRPO (95 % interval +0.0 to +100.0, McNemar p = 0.5): "
        "not distinguishable from noise (the interval includes 0)"
    )
    flipped = paired_difference([[0, 0, 1], [0, 1, 1]], [[1, 0, 1], [1, 1, 1]])
    assert verdict(flipped, "DPO", "IRPO").startswith("DPO is 33.3 points below IRPO (")


def test_paired_difference_rejects_unpaired_inputs() -> None:
    with pytest.raises(ValueError):
        paired_difference([True, False], [True])
