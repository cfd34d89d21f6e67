"""On a GPU machine: the vLLM engine against the transformers engine (run by bench/gpu_check.sh).

Checks, on one small model and the same questions:
1. records: both engines write samples with the same fields (irpo.records.Sample);
2. greedy agreement: exact token agreement and verdict (answer, correct) agreement of the two
   engines' greedy samples (they may differ slightly: different kernels round differently);
3. throughput: generated tokens per second of vLLM and of the transformers engine, sampling
   N completions per question at temperature 0.8 with every sequence forced to T tokens.
Prints a JSON report and writes it to --out.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from irpo.config import ModelConfig, SamplingConfig
from irpo.records import read_samples
from irpo.sampling import SamplingParams, make_engine, sample_problems
from irpo.sampling.engine import DecodeParams, PromptRequest
from irpo.tasks import get_task


def throughput(engine: Any, prompts: list[list[int]], n: int, t: int) -> dict[str, float]:
    requests = [
        PromptRequest(f"q{i}", tuple(ids), tuple(range(i * n, (i + 1) * n)))
        for i, ids in enumerate(prompts)
    ]
    params = DecodeParams(0.8, 1.0, max_new_tokens=t, stop_at_final_answer=False, min_new_tokens=t)
    list(engine.generate(requests[:2], params))  # warm-up (compilation, CUDA graphs)
    start = time.perf_counter()
    tokens = sum(len(c.token_ids) for _, cs in engine.generate(requests, params) for c in cs)
    seconds = time.perf_counter() - start
    return {"tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--task", default="gsm8k")
    parser.add_argument("--source", default=None, help="gsm8k test.jsonl (default: arith)")
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--forced-tokens", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--out", type=Path, default=Path("gpu_check"))
    args = parser.parse_args()

    task_name = args.task if args.source else "arith"
    task = get_task(task_name)
    problems = task.load(args.source, "test", limit=args.questions)
    model_cfg = ModelConfig(name_or_path=args.model, dtype=args.dtype, device="cuda")
    engines = {
        "transformers": make_engine(model_cfg, SamplingConfig(batch_size=args.batch_size)),
        "vllm": make_engine(
            model_cfg,
            SamplingConfig(engine="vllm", vllm={"gpu_memory_utilization": 0.45, "seed": 0}),
        ),
    }
    greedy = SamplingParams(num_samples=1, temperature=0.0, max_new_tokens=args.max_new_tokens)
    args.out.mkdir(parents=True, exist_ok=True)
    samples = {}
    for name, engine in engines.items():
        path = args.out / f"greedy.{name}.jsonl"
        path.unlink(missing_ok=True)
        sample_problems(engine, task, problems, greedy, path)
        samples[name] = read_samples(path)
    hf, vl = samples["transformers"], samples["vllm"]
    fields = {name: sorted(s[0].to_dict()) for name, s in samples.items()}
    report: dict[str, Any] = {
        "model": args.model,
        "dtype": args.dtype,
        "task": task_name,
        "questions": len(problems),
        "same_fields": fields["transformers"] == fields["vllm"],
        "fields": fields["vllm"],
        "same_problem_order": [s.problem_id for s in hf] == [s.problem_id for s in vl],
        "token_agreement": sum(a.token_ids == b.token_ids for a, b in zip(hf, vl, strict=True))
        / len(hf),
        "verdict_agreement": sum(
            (a.answer, a.correct) == (b.answer, b.correct) for a, b in zip(hf, vl, strict=True)
        )
        / len(hf),
        "greedy_accuracy": {
            k: sum(bool(s.correct) for s in v) / len(v) for k, v in samples.items()
        },
        "finish_reasons": {
            k: {r: sum(s.finish_reason == r for s in v) for r in ("eos", "stop", "length")}
            for k, v in samples.items()
        },
    }
    prompts = [engines["vllm"].encode_prompt(task.prompt(p)) for p in problems]
    report["throughput"] = {
        name: throughput(engine, prompts, args.samples, args.forced_tokens)
        for name, engine in engines.items()
    }
    report["throughput"]["settings"] = {
        "questions": len(prompts),
        "samples": args.samples,
        "forced_tokens": args.forced_tokens,
        "transformers_batch_size": args.batch_size,
    }
    text = json.dumps(report, indent=1)
    (args.out / "report.json").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
