"""On a GPU machine: the Ray sampling path (`launch.mode: ray`) on one GPU, one replica, against
the local engines (run by bench/gpu_check.sh).

A local Ray cluster of 1 GPU is started here; then, on the same questions:
1. vLLM through Ray Data LLM (`irpo.sampling.ray_data.RayEngine`) against irpo's local vLLM
   engine: greedy records and seeded sampled records, in float32 so that the two runs round
   alike;
2. the transformers engine in a Ray Data actor (one replica, one batch holding every question:
   the local engine's batch) against the local transformers engine: greedy records.
Exits with status 1, naming the first differing record, unless every pair is identical; prints a
JSON report (records compared, seconds of each pass) and writes it to OUT/ray_report.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from irpo.config import load_config
from irpo.launch import write_run_token
from irpo.models import resolve_model_path
from irpo.sampling import SamplingParams, make_engine, sample_problems
from irpo.tasks import get_task


def compare(name: str, local: Path, on_ray: Path) -> dict[str, Any]:
    """The two files hold the same records (in any order: Ray returns questions as they end)."""
    a, b = sorted(local.read_text().splitlines()), sorted(on_ray.read_text().splitlines())
    if a != b:
        print(f"MISMATCH {name}: {len(a)} local records, {len(b)} on Ray; first differing:")
        x, y = next((x, y) for x, y in zip([*a, ""], [*b, ""], strict=False) if x != y)
        print(f"  local: {x[:400]}\n  ray:   {y[:400]}")
    return {"records": len(a), "identical": a == b}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--task", default="gsm8k")
    parser.add_argument("--source", default=None, help="gsm8k test.jsonl (default: arith)")
    parser.add_argument("--questions", type=int, default=64)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--out", type=Path, default=Path("gpu_check"))
    args = parser.parse_args()

    import ray

    from irpo.sampling.ray_data import RayEngine

    out = args.out / "ray"
    out.mkdir(parents=True, exist_ok=True)
    task_name = args.task if args.source else "arith"
    task = get_task(task_name)
    problems = task.load(args.source, "test", limit=args.questions)
    model = resolve_model_path(args.model)
    ray.init(num_gpus=1, include_dashboard=False)
    token = write_run_token(out)
    report: dict[str, Any] = {}
    vllm = ["sampling.vllm={gpu_memory_utilization: 0.3}", "sampling.engine=vllm"]
    cases = [
        ("vllm_greedy", vllm, 1, 0.0),
        ("vllm_sampled", vllm, args.samples, 0.8),
        ("transformers_greedy", ["sampling.engine=transformers"], 1, 0.0),
    ]
    for name, engine_set, n, temperature in cases:
        cfg = load_config(
            None,
            [
                f"task.name={task_name}", f"model.name_or_path={model}", "model.dtype=float32",
                "model.device=cuda", "launch.mode=ray", "launch.ray_replicas=1",
                f"launch.ray_batch_questions={args.questions}",
                f"sampling.max_new_tokens={args.max_new_tokens}", *engine_set,
            ],
        )  # fmt: skip
        params = SamplingParams(num_samples=n, temperature=temperature,
                                max_new_tokens=args.max_new_tokens, seed=0)  # fmt: skip
        local, on_ray = out / f"{name}.local.jsonl", out / f"{name}.ray.jsonl"
        for path in (local, on_ray):
            path.unlink(missing_ok=True)
        start = time.perf_counter()
        engine = make_engine(cfg.model, cfg.sampling, model_path=model)
        sample_problems(engine, task, problems, params, local)
        del engine  # (vLLM keeps its 0.3 of the GPU until this process ends: the replica fits)
        local_s = time.perf_counter() - start
        start = time.perf_counter()
        sample_problems(RayEngine(cfg, model, out, token), task, problems, params, on_ray)
        report[name] = {
            **compare(name, local, on_ray),
            "local_s": round(local_s, 1),
            "ray_s": round(time.perf_counter() - start, 1),
        }
    ray.shutdown()
    print(json.dumps(report, indent=2))
    (args.out / "ray_report.json").write_text(json.dumps(report, indent=2) + "\n")
    if not all(r["identical"] for r in report.values()):
        sys.exit("the Ray sampling path differs from the local engines (see MISMATCH above)")
    print("Ray sampling path: records identical to the local engines")


if __name__ == "__main__":
    main()
