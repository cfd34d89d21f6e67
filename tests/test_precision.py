"""The measured number format on CPUs: the probe, its cache, and what sampling and training do
with its answer."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from irpo import precision
from irpo.config import load_config
from irpo.models import build_char_tokenizer, build_llama, save_model
from irpo.precision import MARGIN, Probe, cpu_prefers_bf16, linear_shapes
from irpo.sampling import make_engine
from irpo.train.setup import resolve_mixed_precision


@pytest.fixture()
def measured(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[tuple[Any, int]]:
    """The probe's measurement replaced by fixed rates; the calls it got are recorded."""
    monkeypatch.delenv("IRPO_CPU_DTYPE", raising=False)
    monkeypatch.setenv("IRPO_CACHE", str(tmp_path / "cache"))
    calls: list[tuple[Any, int]] = []
    rates = {"fp32": 100.0, "bf16": 250.0}

    def fake(shapes: Any, rows: int, threads: int | None = None) -> Probe:
        calls.append((shapes, rows))
        return Probe(rates["fp32"], rates["bf16"])

    monkeypatch.setattr(precision, "measure", fake)
    return calls


def _llama(tmp_path: Path) -> Path:
    tok = build_char_tokenizer()
    path = tmp_path / "m"
    save_model(build_llama(tok, hidden_size=64, num_layers=2, num_heads=4, seed=0), tok, path)
    return path


def test_the_shapes_are_the_models_linear_layers() -> None:
    from transformers import LlamaConfig

    cfg = LlamaConfig(hidden_size=576, num_attention_heads=9, num_key_value_heads=3,
                      intermediate_size=1536, vocab_size=49152)  # SmolLM2-135M  # fmt: skip
    assert linear_shapes(cfg) == [(576, 576), (576, 192), (576, 1536), (1536, 576), (576, 49152)]


def test_bfloat16_needs_the_margin() -> None:
    assert Probe(100.0, 100.0 * MARGIN).prefers_bf16
    assert not Probe(100.0, 100.0 * MARGIN - 0.01).prefers_bf16
    assert not Probe(121.0, 60.0).prefers_bf16  # an emulated bfloat16 (older Intel Xeon)


def test_measured_once_per_machine_and_shape(
    measured: list[tuple[Any, int]], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = build_llama(build_char_tokenizer(), hidden_size=64, num_layers=2, num_heads=4).config
    caplog.set_level("INFO", logger="irpo.precision")
    assert cpu_prefers_bf16(cfg, 256, purpose="sampling") is True
    assert cpu_prefers_bf16(cfg, 256, purpose="sampling") is True
    assert len(measured) == 1  # the second answer came from the cache
    [cached] = list((tmp_path / "cache" / "precision").glob("*.json"))
    assert json.loads(cached.read_text()) == {"fp32_gflops": 100.0, "bf16_gflops": 250.0}
    assert "sampling on CPU: bfloat16 (measured: bfloat16 250 GFLOP/s, float32 100 GFLOP/s, " \
        "2.50x; bfloat16 needs 1.15x)" in caplog.text  # fmt: skip
    cpu_prefers_bf16(cfg, 1024, purpose="training")  # other rows: other shapes of work
    assert [rows for _, rows in measured] == [256, 1024]


def test_the_environment_can_fix_the_format(
    measured: list[tuple[Any, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = build_llama(build_char_tokenizer(), hidden_size=64, num_layers=2, num_heads=4).config
    monkeypatch.setenv("IRPO_CPU_DTYPE", "float32")
    assert cpu_prefers_bf16(cfg, 256, purpose="sampling") is False
    assert measured == []


def test_sampling_loads_the_measured_format_unless_one_is_named(
    measured: list[tuple[Any, int]], tmp_path: Path
) -> None:
    path = str(_llama(tmp_path))
    cfg = load_config(None, ["model.device=cpu"])
    assert cfg.model.dtype == "auto"
    engine: Any = make_engine(cfg.model, cfg.sampling, model_path=path)
    assert engine.model.dtype == torch.bfloat16
    named = load_config(None, ["model.device=cpu", "model.dtype=float32"])
    engine = make_engine(named.model, named.sampling, model_path=path)
    assert engine.model.dtype == torch.float32
    assert len(measured) == 1  # a named format is not measured


def test_training_autocasts_where_bfloat16_measures_faster(
    measured: list[tuple[Any, int]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(_llama(tmp_path))
    assert resolve_mixed_precision("auto", path, rows=2048) == "bf16"
    assert resolve_mixed_precision("no", path) == "no"
    monkeypatch.setattr(precision, "measure", lambda shapes, rows, threads=None: Probe(121.0, 60.0))
    assert resolve_mixed_precision("auto", path, rows=4096) == "no"
    assert resolve_mixed_precision("auto", None) == "no"


def test_the_probe_measures_both_formats() -> None:
    probe = precision.measure([(64, 64), (64, 256)], rows=64)
    assert probe.fp32_gflops > 0 and probe.bf16_gflops > 0
    assert math.isfinite(probe.ratio)
