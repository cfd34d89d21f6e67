"""Where metrics go: always the run's metrics.jsonl; W&B, TensorBoard or MLflow when configured.
Progress goes to a `ProgressFactory` callback (the CLI's progress bars).

The external trackers are accelerate's (`accelerate.tracking`), so they take their usual
environment variables (WANDB_PROJECT, MLFLOW_TRACKING_URI, ...). Series are named
`<stage>/<metric>`; training steps are `iter_<t>/train/<metric>` at the optimizer step, so each
iteration's curve starts at step 1 and a resumed run logs to the same series.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from irpo.errors import IrpoError

log = logging.getLogger(__name__)

EXTERNAL = ("wandb", "tensorboard", "mlflow")

ProgressFactory = Callable[[str, int], Callable[..., Any]]
"""Called with (description, total); returns `update(n, **postfix)`. The CLI passes progress
bars; the library reports progress through this callback only."""


class Trackers:
    """The configured external trackers (metrics.jsonl is written by the run directory)."""

    def __init__(self, names: Sequence[str], run_dir: Path, config: dict[str, Any]) -> None:
        self.trackers: list[Any] = []
        for name in names:
            if name in EXTERNAL:
                self.trackers.append(_start(name, run_dir, config))

    def log(self, row: dict[str, Any]) -> None:
        if not self.trackers:
            return
        stage, t = row.get("stage", "run"), row.get("iteration", 0)
        if stage == "train_step":
            prefix, step = f"iter_{t}/train", int(row.get("step", 0))
        elif stage == "eval":
            prefix, step = "eval", int(t)
        else:
            prefix, step = stage, int(t)
        values = {
            f"{prefix}/{k}": v
            for k, v in row.items()
            if k not in ("stage", "iteration", "step", "time")
            and isinstance(v, int | float)
            and not isinstance(v, bool)
        }
        for tracker in self.trackers:
            tracker.log(values, step=step)

    def finish(self) -> None:
        for tracker in self.trackers:
            tracker.finish()


def _start(name: str, run_dir: Path, config: dict[str, Any]) -> Any:
    from accelerate import tracking

    run_name = run_dir.name
    try:
        if name == "tensorboard":
            tracker = tracking.TensorBoardTracker(run_name, run_dir / "tensorboard")
        elif name == "wandb":
            tracker = tracking.WandBTracker(run_name)
        else:
            tracker = tracking.MLflowTracker(run_name, logging_dir=str(run_dir / "mlruns"))
        tracker.start()
        tracker.store_init_configuration(_flat(config))
    except ImportError as e:
        raise IrpoError(
            f"trackers: {name!r} is configured but its package is missing ({e}); "
            "pip install 'irpo[trackers]' or remove it from `trackers`"
        ) from None
    log.info("logging metrics to %s", name)
    return tracker


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v if isinstance(v, int | float | str | bool) else str(v)
    return out
