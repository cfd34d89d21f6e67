"""What a process per stage costs: `irpo run` on the demo config, inline against processes.

Both runs start from the same cached seed model (built first, outside the timing) and do the
same work with the same parallelism: `launch.mode: processes` with one sampling worker and one
training process, so the difference is the price of starting each stage's processes (a Python
interpreter, torch and transformers imports, model loading, torchrun's agent). Each run is one
`irpo run` subprocess, timed from start to exit; the two alternate `--repeats` times.

Command (one line):
    flock /tmp/irpo-cpu.lock .venv/bin/python bench/bench_launch.py --repeats 1
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODES = {
    "inline": [],
    "processes": ["launch.mode=processes", "launch.sampling_workers=1", "launch.train_processes=1"],
}


def timed_run(config: Path, out: Path, sets: list[str], env: dict[str, str]) -> float:
    cmd = [sys.executable, "-m", "irpo.cli", "run", str(config), "-o", str(out)]
    for s in sets:
        cmd += ["--set", s]
    started = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--config", type=Path, default=REPO / "configs" / "demo.yaml")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--set", dest="overrides", action="append", default=[])
    args = p.parse_args()
    env = dict(os.environ)
    results: dict[str, list[float]] = {m: [] for m in MODES}
    with tempfile.TemporaryDirectory(prefix="irpo-launch-") as tmp:
        env.setdefault("IRPO_CACHE", str(Path(tmp) / "cache"))
        warm = [*args.overrides, "loop.iterations=1", "eval.maj_k=0", "task.train_limit=8"]
        timed_run(args.config, Path(tmp) / "warm", warm, env)  # builds and caches the seed
        for _ in range(args.repeats):
            for mode, sets in MODES.items():
                out = Path(tmp) / mode
                results[mode].append(
                    round(timed_run(args.config, out, [*args.overrides, *sets], env), 1)
                )
                shutil.rmtree(out)
    best = {m: min(v) for m, v in results.items()}
    overhead = best["processes"] / best["inline"] - 1
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    cpu = next(
        (ln.split(":", 1)[1].strip() for ln in lscpu.splitlines() if "Model name" in ln), "?"
    )
    summary = {
        "wall_s": results,
        "overhead": round(overhead, 3),
        "cpu": cpu,
        "cores": os.cpu_count(),
    }
    sys.stdout.write(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
