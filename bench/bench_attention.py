"""Attention over the slot cache in one decoding step: which kernels win in which number format.

Times `irpo.sampling.slots._cascade` (the engine's decoding attention) and the alternatives for a
bfloat16 cache on one layer of a model's shapes (SmolLM2-135M's by default: 9 query heads, 3
key/value heads, head_dim 64), with the engine's layout and step plan: `rows` running rows, `n`
samples of each prompt, prompts of random lengths up to `prompt-width`, `generated` columns.

Variants:
- float32: the cache and all products in float32 (the float32 engine);
- bf16: the cache in bfloat16, bfloat16 matrix products (MKL-DNN accumulates in float32 inside a
  product, but rounds its output, the scores, to bfloat16);
- bf16-fp32-softmax: bfloat16 products, the scores upcast to float32 for mask and softmax, the
  probabilities back to bfloat16 for the second product;
- bf16-store-fp32: the cache stored in bfloat16, its views upcast to float32 each step, all
  arithmetic in float32, the output back to bfloat16;
- sdpa-bf16: `scaled_dot_product_attention` on each row's prompt keys gathered next to its own
  (no cascade: each row reads its prompt itself);
- bf16-full-width: bf16, reading the whole generated buffer (`capacity` columns, those past the
  window masked) instead of the window: what the engine does in 16-bit formats once the rows
  use a third of the buffer.

As in the engine, the generated keys/values are a window of `generated` columns of a buffer of
`capacity` columns (default: the engine's for `generated` new tokens), so the window is a
strided view; the product that reads it copies it first in bfloat16 (oneDNN takes contiguous or
transposed operands only), not in float32 (MKL reads strided matrices).

Each variant's error is its largest absolute difference from float32 attention on the same
inputs (outputs are softmax averages of values of size ~1).

    flock /tmp/irpo-cpu.lock .venv/bin/python bench/bench_attention.py --threads 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from irpo.sampling.slots import SlotCache, StepPlan, _cascade
from irpo.sampling.transformers_engine import cache_columns

Variant = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, SlotCache, StepPlan], torch.Tensor]


def make_inputs(
    rows: int,
    n: int,
    heads: int,
    kv_heads: int,
    d: int,
    width: int,
    generated: int,
    seed: int,
    capacity: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, SlotCache, torch.Tensor, torch.Tensor]:
    """float32 query (rows, heads, 1, d) already scaled, generated keys (transposed) and values
    (windows of the cache's buffers), a one-layer SlotCache holding the prompts and the
    buffers, the rows' prompt index and the allowed mask."""
    g = torch.Generator().manual_seed(seed)
    prompts = -(-rows // n)
    capacity = capacity or cache_columns(generated)
    cache = SlotCache(rows, prompts, width, capacity)
    cache.prompt_keys = [torch.randn(prompts, kv_heads, d, width, generator=g)]
    cache.prompt_values = [torch.randn(prompts, kv_heads, width, d, generator=g)]
    cache.keys = [torch.randn(rows, kv_heads, d, capacity, generator=g)]
    cache.values = [torch.randn(rows, kv_heads, capacity, d, generator=g)]
    keys, values = cache.keys[0][..., :generated], cache.values[0][:, :, :generated]
    query = torch.randn(rows, heads, 1, d, generator=g) * d**-0.5
    lengths = torch.randint(width // 2, width + 1, (prompts,), generator=g)
    lengths[0] = width
    index = torch.arange(rows) // n
    starts = torch.randint(0, generated // 2, (rows,), generator=g)
    allowed = torch.cat(
        [
            torch.arange(width)[None, :] < lengths[index][:, None],
            torch.arange(generated)[None, :] >= starts[:, None],
        ],
        dim=1,
    )[:, None, None, :]
    return query, keys, values, cache, index, allowed


def plan_for(
    allowed: torch.Tensor, index: torch.Tensor, n: int, width: int, dtype: torch.dtype
) -> StepPlan:
    mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill_(~allowed, torch.finfo(dtype).min)
    prompts = int(index.max()) + 1
    return StepPlan(
        prompts=prompts,
        group=n,
        prompt_width=width,
        prompt_index=index,
        rank=torch.arange(len(index)) % n,
        mask=mask,
    )


def cascade(q, k, v, cache, plan):
    return _cascade(q, k, v, cache, 0, plan)


def cascade_fp32_softmax(q, k, v, cache, plan):
    """_cascade with float32 scores for the mask and softmax."""
    return _cascade(q, k, v, cache, 0, plan, softmax_dtype=torch.float32)


def store_bf16_compute_fp32(q, k, v, cache, plan):
    """The cache in bfloat16, upcast each step; all arithmetic in float32."""
    up = SlotCache(cache.num_rows, cache.num_prompts, cache.prompt_capacity, cache.capacity)
    a, width = plan.prompts, plan.prompt_width
    up.prompt_keys = [cache.prompt_keys[0][:a, ..., :width].float()]
    up.prompt_values = [cache.prompt_values[0][:a, :, :width].float()]
    out = _cascade(q.float(), k.float(), v.float(), up, 0, plan)
    return out.to(q.dtype)


def sdpa(q, k, v, cache, plan):
    """Each row's prompt keys/values gathered beside its own, then SDPA with GQA."""
    width = plan.prompt_width
    pk = cache.prompt_keys[0][plan.prompt_index, ..., :width]  # (n, kv, d, width)
    pv = cache.prompt_values[0][plan.prompt_index, :, :width]
    keys = torch.cat([pk, k], dim=-1).transpose(-1, -2)  # (n, kv, L, d)
    values = torch.cat([pv, v], dim=-2)
    out = F.scaled_dot_product_attention(
        q, keys, values, attn_mask=plan.mask, scale=1.0, enable_gqa=True
    )  # (n, heads, 1, d)
    return out.transpose(1, 2)


def full_width(q, k, v, cache, plan):
    """bf16, reading the whole generated buffer; the columns after the window masked."""
    keys, values = cache.keys[0], cache.values[0]
    extra = keys.shape[-1] - k.shape[-1]
    mask = F.pad(plan.mask, (0, extra), value=torch.finfo(plan.mask.dtype).min)
    wide = StepPlan(plan.prompts, plan.group, plan.prompt_width, plan.prompt_index, plan.rank, mask)
    return _cascade(q, keys, values, cache, 0, wide)


VARIANTS: dict[str, tuple[Variant, torch.dtype, torch.dtype]] = {
    # name: (function, cache dtype, mask/query dtype)
    "float32": (cascade, torch.float32, torch.float32),
    "bf16": (cascade, torch.bfloat16, torch.bfloat16),
    "bf16-fp32-softmax": (cascade_fp32_softmax, torch.bfloat16, torch.float32),
    "bf16-store-fp32": (store_bf16_compute_fp32, torch.bfloat16, torch.float32),
    "sdpa-bf16": (sdpa, torch.bfloat16, torch.bfloat16),
    "bf16-full-width": (full_width, torch.bfloat16, torch.bfloat16),
}


def run(args: argparse.Namespace) -> list[dict]:
    q32, k32, v32, cache32, index, allowed = make_inputs(
        args.rows, args.n, args.heads, args.kv_heads, args.head_dim,
        args.prompt_width, args.generated, args.seed, args.capacity,
    )  # fmt: skip
    reference = cascade(
        q32, k32, v32, cache32, plan_for(allowed, index, args.n, args.prompt_width, torch.float32)
    )
    results = []
    for name in args.variants:
        fn, store, mask_dtype = VARIANTS[name]
        cache = SlotCache(args.rows, cache32.num_prompts, args.prompt_width, cache32.capacity)
        cache.prompt_keys = [cache32.prompt_keys[0].to(store)]
        cache.prompt_values = [cache32.prompt_values[0].to(store)]
        cache.keys = [cache32.keys[0].to(store)]
        cache.values = [cache32.values[0].to(store)]
        q = q32.to(store)
        k, v = cache.keys[0][..., : args.generated], cache.values[0][:, :, : args.generated]
        plan = plan_for(allowed, index, args.n, args.prompt_width, mask_dtype)
        out = fn(q, k, v, cache, plan)
        error = float((out.float() - reference).abs().max())
        for _ in range(args.warmup):
            fn(q, k, v, cache, plan)
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            for _ in range(args.inner):
                fn(q, k, v, cache, plan)
            times.append((time.perf_counter() - t0) / args.inner)
        ms = statistics.median(times) * 1e3
        results.append({"variant": name, "ms_per_layer": round(ms, 3), "max_abs_error": error})
        print(f"{name:18s} {ms:8.3f} ms/layer   max |error| vs float32 {error:.2e}", flush=True)
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=256)
    p.add_argument("--n", type=int, default=8, help="samples per prompt")
    p.add_argument("--heads", type=int, default=9)
    p.add_argument("--kv-heads", type=int, default=3)
    p.add_argument("--head-dim", type=int, default=64)
    p.add_argument("--prompt-width", type=int, default=192)
    p.add_argument("--generated", type=int, nargs="+", default=[32, 128, 320])
    p.add_argument(
        "--capacity",
        type=int,
        help="columns of the generated buffer (default: the engine's for each --generated)",
    )
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--inner", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write the results here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {args.threads} threads, rows {args.rows}, n {args.n}, "
        f"heads {args.heads}/{args.kv_heads}, head_dim {args.head_dim}, "
        f"prompt width {args.prompt_width}"
    )
    everything = []
    generated_sizes = args.generated
    for generated in generated_sizes:
        print(f"-- generated columns {generated}")
        args.generated = generated
        for r in run(args):
            everything.append({"generated": generated, **r})
    if args.json:
        with open(args.json, "w") as f:
            json.dump(everything, f, indent=1)


if __name__ == "__main__":
    main()
