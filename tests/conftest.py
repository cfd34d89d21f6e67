"""Shared fixtures: tiny models built in-process, the shared data folder, one torch thread."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
# `auto` number formats are measured per machine (irpo.precision): tests fix float32, so that
# their exact expected outputs hold on every CPU; tests of the choice itself unset it.
os.environ.setdefault("IRPO_CPU_DTYPE", "float32")

SHARED_DATA = Path(
    os.environ.get("IRPO_SHARED_DATA", Path(__file__).parents[2] / "shared" / "data")
)


@pytest.fixture(autouse=True, scope="session")
def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real datasets folder; tests that need it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder {SHARED_DATA} is absent (set IRPO_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 2-layer char-level Llama saved as a normal HF folder."""
    from irpo.models import build_char_tokenizer, build_llama, save_model

    path = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = build_char_tokenizer()
    model = build_llama(tokenizer, hidden_size=32, num_layers=2, num_heads=2, seed=0)
    save_model(model, tokenizer, path)
    return path
