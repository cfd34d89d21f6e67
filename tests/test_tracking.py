from __future__ import annotations

from pathlib import Path
from typing import Any

from irpo.tracking import Trackers


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, Any], int]] = []

    def log(self, values: dict[str, Any], step: int) -> None:
        self.calls.append((values, step))

    def finish(self) -> None:
        self.calls.append(({"finished": True}, -1))


def test_rows_become_named_series(tmp_path: Path) -> None:
    trackers = Trackers(["jsonl"], tmp_path, {})
    assert trackers.trackers == []  # metrics.jsonl is written by the run directory
    rec = Recorder()
    trackers.trackers.append(rec)
    trackers.log({"stage": "train_step", "iteration": 1, "step": 7, "loss": 0.5, "time": 3.0})
    trackers.log({"stage": "eval", "iteration": 2, "greedy_accuracy": 0.25, "k": 4, "settings": {}})
    trackers.log({"stage": "pairs", "iteration": 0, "pairs": 12, "dedupe": True})
    trackers.finish()
    assert rec.calls == [
        ({"iter_1/train/loss": 0.5}, 7),
        ({"eval/greedy_accuracy": 0.25, "eval/k": 4}, 2),
        ({"pairs/pairs": 12}, 0),
        ({"finished": True}, -1),
    ]


def test_tensorboard_through_accelerate(tmp_path: Path) -> None:
    trackers = Trackers(["jsonl", "tensorboard"], tmp_path / "run", {"train": {"beta": 0.1}})
    trackers.log({"stage": "eval", "iteration": 0, "greedy_accuracy": 0.5})
    trackers.finish()
    events = list((tmp_path / "run" / "tensorboard").rglob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
