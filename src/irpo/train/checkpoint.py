"""The training folder: resumable states, the final model, the DONE marker. All writes atomic.

    OUT/
      settings.json        what was trained (config, seed, data fingerprint); checked on resume
      reference_logps.jsonl reference log-probs computed here (when the pairs had none)
      train_log.jsonl      one row of metrics per logged step
      checkpoints/step-N/  resumable state: model, optimizer, scheduler, RNG (accelerate);
                           `state.json` (written last) marks it complete
      model/               the final checkpoint: safetensors + config + tokenizer
      result.json          written last: the training is finished (TrainResult)

A folder is written under a temporary name and renamed when complete, so a crash never leaves
a half-written state or model where a finished one is expected.
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path
from typing import Any

from irpo.records import atomic_output, read_json, read_jsonl, replace_path, write_json, write_jsonl

log = logging.getLogger(__name__)

_STEP_DIR = re.compile(r"^step-(\d+)$")


class TrainDir:
    """Paths inside one training's output folder."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.settings = self.root / "settings.json"
        self.reference = self.root / "reference_logps.jsonl"
        self.log = self.root / "train_log.jsonl"
        self.checkpoints = self.root / "checkpoints"
        self.model = self.root / "model"
        self.result = self.root / "result.json"

    def state_dir(self, step: int) -> Path:
        return self.checkpoints / f"step-{step:08d}"

    def latest_state(self) -> tuple[int, Path] | None:
        """The most recent complete state (its `state.json` exists), or None."""
        best: tuple[int, Path] | None = None
        if self.checkpoints.is_dir():
            for d in self.checkpoints.iterdir():
                m = _STEP_DIR.match(d.name)
                if m and (d / "state.json").exists() and (best is None or int(m[1]) > best[0]):
                    best = (int(m[1]), d)
        return best

    def clear(self) -> None:
        """Remove what an earlier training wrote here (only the files this module knows)."""
        for path in (self.settings, self.reference, self.log, self.result):
            path.unlink(missing_ok=True)
        for folder in (self.checkpoints, self.model):
            shutil.rmtree(folder, ignore_errors=True)


def save_state(accelerator: Any, tdir: TrainDir, step: int) -> Path:
    """Save a resumable state for `step` (all processes call this) and drop older ones."""
    final = tdir.state_dir(step)
    tmp = tdir.checkpoints / f".tmp-step-{step:08d}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp), safe_serialization=True)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_json(tmp / "state.json", {"step": step})
        replace_path(tmp, final)
        for d in tdir.checkpoints.iterdir():
            if d != final and _STEP_DIR.match(d.name):
                shutil.rmtree(d, ignore_errors=True)
        log.info("saved the training state at step %d in %s", step, final)
    accelerator.wait_for_everyone()
    return final


def truncate_log(path: Path, step: int) -> None:
    """Keep the log rows up to `step` (those of a resumed state); later rows will be redone."""
    if path.exists():
        write_jsonl(path, [row for row in read_jsonl(path) if row.get("step", 0) <= step])


def save_model_atomic(
    model: Any, tokenizer: Any, state_dict: dict[str, Any] | None, dest: Path
) -> None:
    """Write a `from_pretrained` checkpoint to `dest`, through a temporary folder."""
    # Like irpo.models.save_model, with an explicit state dict (gathered under FSDP / ZeRO-3).
    with atomic_output(dest, folder=True) as tmp:
        model.save_pretrained(tmp, state_dict=state_dict, safe_serialization=True)
        tokenizer.save_pretrained(tmp)


def read_settings(tdir: TrainDir) -> dict[str, Any] | None:
    return read_json(tdir.settings) if tdir.settings.exists() else None
