"""The seed model trained from scratch: its cache key and its learning-rate schedule."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import irpo.train
from irpo.config import demo_config_path, load_config
from irpo.seed_model import build_seed_model, seed_key
from irpo.tasks import get_task

TINY_SEED = [
    "task.name=arith",
    "task.options.max_number=9",
    "model.name_or_path=scratch",
    "seed_model.hidden_size=16",
    "seed_model.num_layers=1",
    "seed_model.num_heads=2",
    "seed_model.max_position_embeddings=96",
    "seed_model.train_problems=16",
    "seed_model.steps=6",
    "seed_model.batch_size=4",
    "seed_model.learning_rate=0.01",
    "seed_model.warmup_steps=2",
]


def test_cosine_key_is_the_one_cached_before_the_schedule_option() -> None:
    # The demo's cosine seed kept its cache key when `seed_model.schedule` was added; a constant
    # schedule is a different seed.
    cosine = load_config(demo_config_path(), ["seed_model.schedule=cosine"])
    del cosine.task.options["size"]  # the demo's task options of then
    assert seed_key(cosine) == "26a4e8e5c49d919e"
    constant = load_config(demo_config_path(), ["seed_model.schedule=constant"])
    assert seed_key(constant) != seed_key(cosine)


def test_scoring_options_do_not_change_the_seed_model() -> None:
    base = load_config(demo_config_path())
    steps = load_config(demo_config_path(), ["task.options.check_steps=train"])
    harder = load_config(demo_config_path(), ["task.options.max_number=20"])
    assert seed_key(steps) == seed_key(base)
    assert seed_key(harder) != seed_key(base)


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_seed_training_follows_the_schedule(
    schedule: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IRPO_CACHE", str(tmp_path))
    rows: list[dict[str, Any]] = []
    real = irpo.train.train_sft

    def recording(*args: Any, **kwargs: Any) -> Any:
        return real(*args, **kwargs, log_fn=rows.append)

    monkeypatch.setattr(irpo.train, "train_sft", recording)
    config = load_config(None, [*TINY_SEED, f"seed_model.schedule={schedule}"])
    task = get_task(config.task.name, **config.task.options)
    folder = build_seed_model(config, task)
    assert (folder / "model.safetensors").exists()
    lrs = [round(r["lr"], 8) for r in rows]
    assert len(lrs) == 6
    assert lrs[:2] == [0.0, 0.005]  # each step's rate: a linear warmup over 2 steps, then
    if schedule == "constant":
        assert lrs[2:] == [0.01] * 4
    else:
        assert lrs[2:] == [0.01, 0.00853553, 0.005, 0.00146447]  # cosine over the other 4
