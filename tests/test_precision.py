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

    def fake(config: Any, rows: int, *, train: bool = False, length: int = 256) -> Probe:
        calls.append((train, rows))
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
    cpu_prefers_bf16(cfg, 1024, purpose="training", train=True)  # another kind of step
    assert measured == [(False, 256), (True, 1024)]


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
    assert resolve_mixed_precision("auto", path, sequences=8, length=256) == "bf16"
    assert resolve_mixed_precision("no", path) == "no"
    monkeypatch.setattr(
        precision, "measure", lambda config, rows, train=False, length=256: Probe(121.0, 60.0)
    )
    assert resolve_mixed_precision("auto", path, sequences=16, length=256) == "no"
    assert resolve_mixed_precision("auto", None) == "no"


def test_the_probe_times_a_step_of_the_model_in_both_formats() -> None:
    cfg = build_llama(build_char_tokenizer(), hidden_size=64, num_layers=6, num_heads=4).config
    for train, rows in ((False, 64), (True, 512)):
        probe = precision.measure(cfg, rows, train=train)
        assert probe.fp32_gflops > 0 and probe.bf16_gflops > 0
    assert cfg.num_hidden_layers == 6  # the probe built its own 2-layer copy


@pytest.mark.slow
def test_bfloat16_sampling_keeps_the_accuracy(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Greedy verdicts of the test seed model (the demo's kind of model, smaller) on 270 held-out
    problems in float32 and in bfloat16: the accuracies differ by less than twice the paired
    standard error (McNemar's, sqrt(discordant) / n), and the two agree on most problems."""
    from irpo.evaluate import evaluate_model
    from irpo.seed_model import build_seed_model
    from irpo.tasks import get_task
    from tests.test_loop import tiny_config

    monkeypatch.setenv("IRPO_CACHE", str(tmp_path_factory.getbasetemp() / "irpo-cache"))
    cfg = tiny_config(
        "task.options.max_steps=2",  # 1-2 steps of numbers to 10: 274 distinct test problems
        "task.options.max_number=10",
        "seed_model.hidden_size=64",
        "seed_model.steps=300",
        "seed_model.batch_size=32",
        "seed_model.train_problems=2000",
    )
    task = get_task(cfg.task.name, **cfg.task.options)
    seed = str(build_seed_model(cfg, task))
    problems = task.load(None, "test", limit=270)
    verdicts = {}
    for dtype in ("float32", "bfloat16"):
        model_cfg = cfg.model.model_copy(update={"dtype": dtype})
        engine: Any = make_engine(model_cfg, cfg.sampling, model_path=seed)
        assert engine.model.dtype == getattr(torch, dtype)
        result = evaluate_model(
            engine, task, problems, cfg.eval.model_copy(update={"maj_k": 0}), seed=0,
            max_new_tokens=cfg.sampling.max_new_tokens,
        )  # fmt: skip
        verdicts[dtype] = [bool(q.greedy_correct) for q in result.per_question]
    fp32, bf16 = verdicts["float32"], verdicts["bfloat16"]
    n = len(problems)
    discordant = sum(a != b for a, b in zip(fp32, bf16, strict=True))
    assert 10 <= sum(fp32) <= n - 10  # a model that gets some right and some wrong
    assert discordant <= 0.1 * n
    assert abs(sum(bf16) - sum(fp32)) / n <= 2 * math.sqrt(max(discordant, 1)) / n


def test_a_bfloat16_autocast_training_follows_the_float32_losses(tmp_path: Path) -> None:
    """8 steps on the same pairs: every logged loss of the bf16-autocast run within 2 % of the
    float32 run's (its weights stay float32)."""
    from irpo.train import train_preference
    from tests.test_train import load_weights, log_rows, make_pairs, tiny_cfg

    path = tmp_path / "m0"
    tok = build_char_tokenizer()
    save_model(build_llama(tok, hidden_size=64, num_layers=2, num_heads=4, seed=0), tok, path)
    pairs = make_pairs(4)
    runs = {}
    for mp in ("no", "bf16"):
        cfg = tiny_cfg(max_steps=8, learning_rate=1e-3, mixed_precision=mp)
        train_preference(str(path), pairs, cfg, tmp_path / mp, seed=0)
        runs[mp] = [r["loss"] for r in log_rows(tmp_path / mp)]
    assert len(runs["no"]) == len(runs["bf16"]) == 8
    for fp32, bf16 in zip(runs["no"], runs["bf16"], strict=True):
        assert bf16 == pytest.approx(fp32, rel=2e-2)
    assert runs["bf16"] != runs["no"]  # it did compute in bfloat16
    assert runs["bf16"][-1] < runs["bf16"][0]
    weights = load_weights(tmp_path / "bf16" / "model")
    assert all(w.dtype == torch.float32 for w in weights.values())
