"""The one place that knows the run directory layout, its manifest and its metrics log.

    RUN/
      config.yaml            the resolved configuration of the run
      manifest.json          status of every stage: {"iter_0/sample": {"status": "done", ...}}
      metrics.jsonl          every metric row (stage summaries and training steps)
      seed/                  the seed model M_0 when the run builds it (demo)
      evals/model_<t>.json   evaluation of M_t (M_0 is the seed)
      iter_<t>/              iteration t: M_t -> M_{t+1}
        samples.jsonl        N verified samples per training question
        sample_stats.json
        pairs.jsonl          preference pairs with reference log-probs
        preference.jsonl     the pairs as prompt/chosen/rejected rows (for other trainers)
        pair_stats.json
        train/               resumable training state and train_log.jsonl
        train/model/         the checkpoint M_{t+1}
      report/                REPORT.md, plots, table.csv, table.json

A stage is marked done only after all its outputs are written, so a killed run restarts at the
first stage that is not done; stages that write incrementally (sampling, training) resume
from their partial outputs.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from irpo.config import RunConfig, config_from_dict, dump_config
from irpo.errors import IrpoError
from irpo.records import append_jsonl, read_json, read_jsonl, write_json, write_text

log = logging.getLogger(__name__)

# Keys that may change between invocations of the same run without invalidating finished work.
# Raising loop.iterations extends a finished run; trackers only change where metrics are sent.
EXTENSIBLE_KEYS = frozenset({"loop.iterations", "loop.min_gain", "trackers"})


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            flat.update(_flatten(v, key + "."))
        else:
            flat[key] = v
    return flat


def config_changes(old: RunConfig, new: RunConfig) -> dict[str, tuple[Any, Any]]:
    a = _flatten(old.model_dump(mode="json"))
    b = _flatten(new.model_dump(mode="json"))
    return {k: (a.get(k), b.get(k)) for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)}


@dataclass(frozen=True)
class IterationDir:
    root: Path
    index: int

    @property
    def samples(self) -> Path:
        return self.root / "samples.jsonl"

    @property
    def sample_stats(self) -> Path:
        return self.root / "sample_stats.json"

    @property
    def pairs(self) -> Path:
        return self.root / "pairs.jsonl"

    @property
    def preference(self) -> Path:
        return self.root / "preference.jsonl"

    @property
    def pair_stats(self) -> Path:
        return self.root / "pair_stats.json"

    @property
    def sft_examples(self) -> Path:
        return self.root / "sft_examples.jsonl"

    @property
    def train(self) -> Path:
        return self.root / "train"

    @property
    def model(self) -> Path:
        """The checkpoint M_{t+1}, where the trainer saves it."""
        return self.train / "model"


class RunDir:
    """Open or create a run directory for a configuration."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    # ------------------------------------------------------------------ layout
    @property
    def config_path(self) -> Path:
        return self.root / "config.yaml"

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    @property
    def metrics_path(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def seed_dir(self) -> Path:
        return self.root / "seed"

    @property
    def report_dir(self) -> Path:
        return self.root / "report"

    def eval_path(self, model_index: int) -> Path:
        return self.root / "evals" / f"model_{model_index}.json"

    def iteration(self, t: int) -> IterationDir:
        return IterationDir(self.root / f"iter_{t}", t)

    # ------------------------------------------------------------------ config
    def exists(self) -> bool:
        return self.config_path.exists()

    def load_config(self) -> RunConfig:
        if not self.exists():
            raise IrpoError(f"{self.root}: not a run directory (no config.yaml)")
        data = yaml.safe_load(self.config_path.read_text(encoding="utf-8")) or {}
        return config_from_dict(data, str(self.config_path))

    def init(self, config: RunConfig, *, allow_config_change: bool = False) -> None:
        """Create the run, or check that an existing run was made with the same config."""
        if self.exists():
            old = self.load_config()
            changes = config_changes(old, config)
            blocking = {k: v for k, v in changes.items() if k not in EXTENSIBLE_KEYS}
            if blocking and not allow_config_change:
                lines = [f"  {k}: {a!r} -> {b!r}" for k, (a, b) in blocking.items()]
                raise IrpoError(
                    f"{self.root} was started with a different configuration:\n"
                    + "\n".join(lines)
                    + "\nUse a new run directory, or pass --allow-config-change to continue "
                    "this run with the new values (finished stages are kept as they are)."
                )
            if changes:
                log.warning("configuration changed: %s", ", ".join(changes))
        self.root.mkdir(parents=True, exist_ok=True)
        text = dump_config(config)
        if not self.config_path.exists() or self.config_path.read_text(encoding="utf-8") != text:
            write_text(self.config_path, text)

    # ------------------------------------------------------------------ manifest
    def manifest(self) -> dict[str, Any]:
        if not self.manifest_path.exists():
            return {"stages": {}}
        data = read_json(self.manifest_path)
        if not isinstance(data, dict) or not isinstance(data.get("stages"), dict):
            raise IrpoError(f"{self.manifest_path}: not a run manifest")
        return data

    def is_done(self, stage: str) -> bool:
        return self.manifest()["stages"].get(stage, {}).get("status") == "done"

    def stage_info(self, stage: str) -> dict[str, Any]:
        return dict(self.manifest()["stages"].get(stage, {}))

    def mark_done(self, stage: str, **info: Any) -> None:
        data = self.manifest()
        data["stages"][stage] = {"status": "done", "finished_at": time.time(), **info}
        write_json(self.manifest_path, data)

    def set_value(self, key: str, value: Any) -> None:
        data = self.manifest()
        data[key] = value
        write_json(self.manifest_path, data)

    # ------------------------------------------------------------------ metrics
    def log_metrics(self, row: dict[str, Any]) -> None:
        append_jsonl(self.metrics_path, [{"time": round(time.time(), 3), **row}])

    def metrics(self) -> list[dict[str, Any]]:
        if not self.metrics_path.exists():
            return []
        return list(read_jsonl(self.metrics_path))
