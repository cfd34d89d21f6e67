"""The attention benchmark's variants compute the same attention as the engine's cascade."""

from __future__ import annotations

import argparse
from types import ModuleType

import pytest
import torch

from tests.bench_scripts import load_bench

SIZES = {"rows": 12, "n": 4, "heads": 4, "kv_heads": 2, "head_dim": 8, "prompt_width": 6}


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_bench("bench_attention")


@pytest.mark.parametrize(
    "variant", ["bf16-fp32-softmax", "bf16-store-fp32", "sdpa-bf16", "bf16-full-width"]
)
def test_each_variant_is_the_cascade_in_float32(bench: ModuleType, variant: str) -> None:
    """Given float32 inputs, each alternative equals `_cascade` to float32 rounding."""
    q, k, v, cache, index, allowed = bench.make_inputs(*SIZES.values(), generated=5, seed=1)
    plan = bench.plan_for(allowed, index, SIZES["n"], SIZES["prompt_width"], torch.float32)
    reference = bench.cascade(q, k, v, cache, plan)
    assert reference.shape == (12, 1, 4, 8)
    assert k.shape[-1] == 5 and cache.keys[0].shape[-1] == 21  # a window of the buffer
    out = bench.VARIANTS[variant][0](q, k, v, cache, plan)
    assert out.shape == reference.shape
    torch.testing.assert_close(out.float(), reference, rtol=0, atol=1e-5)


def test_run_reports_each_variant_with_its_error(bench: ModuleType) -> None:
    args = argparse.Namespace(
        **SIZES,
        generated=5,
        seed=1,
        capacity=None,
        variants=list(bench.VARIANTS),
        warmup=0,
        repeats=1,
        inner=1,
    )
    results = bench.run(args)
    assert [r["variant"] for r in results] == list(bench.VARIANTS)
    errors = {r["variant"]: r["max_abs_error"] for r in results}
    assert errors["float32"] == 0.0  # the reference itself
    for name in ("bf16", "bf16-fp32-softmax", "bf16-store-fp32", "sdpa-bf16", "bf16-full-width"):
        assert 0.0 < errors[name] < 0.05, (name, errors[name])  # bfloat16 rounding, no more
    assert all(r["ms_per_layer"] > 0 for r in results)
