"""How long a graceful stop takes: the grace period a scheduler must give `irpo run`.

A SIGTERM during training saves a resumable state (model, AdamW moments, scheduler, RNG) at the
next optimizer-step boundary and exits. The grace period must cover the rest of the current
optimizer step plus that save. This script trains SmolLM2-135M-Instruct (float32, CPU) on
synthetic pairs, asks for a stop after step 1 exactly as the SIGTERM handler does, and reports:
  step_s     the mean optimizer step time (the part of a step left when the signal arrives)
  save_s     from the stop request at the step boundary to the exception: the state save
  resume_s   loading that state again in the rerun, up to its first new step
  state_mb   the size of the saved state on disk

Command (one line):
    flock /tmp/irpo-cpu.lock .venv/bin/python bench/bench_preemption.py --repeats 3
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import torch


def one_trial(model_path: str, pairs: list[Any], work: Path) -> dict[str, float]:
    from irpo import preemption
    from irpo.config import TrainConfig
    from irpo.train import train_preference

    cfg = TrainConfig(
        learning_rate=1e-6,
        batch_size=4,
        micro_batch_size=4,
        max_steps=3,
        mixed_precision="no",
        gradient_checkpointing=True,
    )
    marks: dict[str, float] = {}

    def stop_after_first(row: dict[str, Any]) -> None:
        marks.setdefault(f"step_{row['step']}", time.perf_counter())
        if row["step"] == 1:
            preemption.request(signal.SIGTERM)

    out = work / "train"
    with preemption.graceful_stop():
        try:
            train_preference(model_path, pairs, cfg, out, seed=0, log_fn=stop_after_first)
        except preemption.Preempted:
            stopped = time.perf_counter()
    state = next((out / "checkpoints").iterdir())
    size = sum(p.stat().st_size for p in state.rglob("*") if p.is_file())
    again: dict[str, float] = {}
    started = time.perf_counter()

    def mark(row: dict[str, Any]) -> None:
        again.setdefault(f"step_{row['step']}", time.perf_counter())

    train_preference(model_path, pairs, cfg, out, seed=0, log_fn=mark)
    step_s = again["step_3"] - again["step_2"]
    shutil.rmtree(out)
    return {
        "step_s": step_s,
        "save_s": stopped - marks["step_1"],
        "resume_s": again["step_2"] - started - step_s,
        "state_mb": size / 2**20,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    from bench_train import synthetic_pairs
    from irpo.models import load_model, load_tokenizer, resolve_model_path
    from irpo.records import Pair
    from irpo.train import compute_reference_logps

    model_path = resolve_model_path(args.model)
    tokenizer = load_tokenizer(model_path)
    pairs = [Pair.from_dict(r) for r in synthetic_pairs(tokenizer, 4)]
    compute_reference_logps(load_model(model_path, dtype="float32"), pairs, batch_size=4)
    trials = []
    with tempfile.TemporaryDirectory(prefix="irpo-preempt-") as tmp:
        for _ in range(args.repeats):
            trials.append(one_trial(model_path, pairs, Path(tmp)))
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    model_name = next(
        (ln.split(":", 1)[1].strip() for ln in cpu.splitlines() if "Model name" in ln), "?"
    )
    summary = {
        k: [round(t[k], 2) for t in trials] for k in ("step_s", "save_s", "resume_s", "state_mb")
    }
    summary["median_save_s"] = round(statistics.median(t["save_s"] for t in trials), 2)
    summary["machine"] = f"{model_name}, {args.threads} threads, {platform.python_version()}"
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
