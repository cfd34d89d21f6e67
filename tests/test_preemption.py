"""SIGTERM / SIGINT stop at a safe point (`irpo.preemption`), and the rerun continues exactly."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

from irpo import preemption
from tests.test_train import load_weights, log_rows, make_pairs, max_diff, tiny_cfg


def test_the_first_signal_asks_the_second_stops_at_once() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with preemption.graceful_stop():
        assert preemption.requested() is None
        preemption.check("nothing asked")  # no stop asked: nothing happens
        os.kill(os.getpid(), signal.SIGTERM)
        assert preemption.requested() == signal.SIGTERM
        with pytest.raises(preemption.Preempted, match="stopped by SIGTERM after step 3"):
            preemption.check("after step 3")
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert preemption.requested() is None  # cleared on the way out
    assert signal.getsignal(signal.SIGTERM) is before


def test_training_stops_after_a_step_with_a_state_and_resumes_exactly(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    from irpo.train import train_preference

    pairs = make_pairs(8)
    cfg = tiny_cfg(max_steps=6, schedule="cosine", warmup_steps=2)  # no save_every: no states
    full = train_preference(str(tiny_model_dir), pairs, cfg, tmp_path / "full", seed=5)

    def term_at_step_4(row: dict[str, Any]) -> None:
        if row["step"] == 4:
            preemption.request(signal.SIGTERM)  # what the handler does when SIGTERM arrives

    out = tmp_path / "stopped"
    with (
        preemption.graceful_stop(),
        pytest.raises(preemption.Preempted, match=r"after optimizer step 4 of 6 \(state"),
    ):
        train_preference(str(tiny_model_dir), pairs, cfg, out, seed=5, log_fn=term_at_step_4)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-00000004"]
    resumed_rows: list[dict[str, Any]] = []
    resumed = train_preference(
        str(tiny_model_dir), pairs, cfg, out, seed=5, log_fn=resumed_rows.append
    )
    assert [r["step"] for r in resumed_rows] == [5, 6]  # only the two steps not yet done
    assert max_diff(load_weights(full.model_dir), load_weights(resumed.model_dir)) == 0.0
    assert [r["loss"] for r in log_rows(out)] == [r["loss"] for r in log_rows(tmp_path / "full")]
