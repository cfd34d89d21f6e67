"""The number format a CPU computes a model fastest in, measured on the machine itself.

Which of float32 and bfloat16 wins on a CPU depends on the CPU: with AVX512-BF16 or AMX a
bfloat16 matrix product runs 2-3x the float32 one (oneDNN), without them bfloat16 is emulated
and slower (docs/BENCHMARKS.md has both kinds of machine). So `model.dtype: auto` (sampling and
evaluation) and `train.mixed_precision: auto` (bf16 autocast over float32 master weights) ask
`cpu_prefers_bf16`, which times the model's own linear layers (`F.linear` on its hidden,
key/value, MLP and LM-head shapes at the rows a step computes) in both formats, a few tenths of
a second each, and caches the answer per machine, torch version, thread count and shapes under
IRPO_CACHE. The choice and both rates are logged. A `model.dtype` or `train.mixed_precision`
named in the config is used as it is, without a probe; reference log-probs stay float32 on CPUs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import time
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

MARGIN = 1.15
"""bfloat16 is chosen when its measured rate is at least this many times float32's: a format
that is only as fast loses precision for nothing."""

PROBE_SECONDS = 0.15
"""Time spent per format and shape (after a warm-up call)."""


@dataclass(frozen=True)
class Probe:
    """What the probe measured: model GFLOP/s of one step's linear layers in each format."""

    fp32_gflops: float
    bf16_gflops: float

    @property
    def prefers_bf16(self) -> bool:
        return self.bf16_gflops >= MARGIN * self.fp32_gflops

    @property
    def ratio(self) -> float:
        return self.bf16_gflops / self.fp32_gflops


def linear_shapes(config: Any) -> list[tuple[int, int]]:
    """(in, out) of a decoder's linear layers and its LM head, from a transformers config."""
    h = int(config.hidden_size)
    heads = int(config.num_attention_heads)
    head_dim = int(getattr(config, "head_dim", None) or h // heads)
    kv = int(getattr(config, "num_key_value_heads", None) or heads) * head_dim
    inter = int(getattr(config, "intermediate_size", None) or 4 * h)
    return [(h, heads * head_dim), (h, kv), (h, inter), (inter, h), (h, int(config.vocab_size))]


def measure(shapes: list[tuple[int, int]], rows: int, threads: int | None = None) -> Probe:
    """Time y = x W^T for every shape at `rows` rows, in float32 and in bfloat16."""
    import torch
    import torch.nn.functional as F

    if threads is not None:
        torch.set_num_threads(threads)
    rates = {}
    for dtype in (torch.float32, torch.bfloat16):
        flops = 0.0
        seconds = 0.0
        for k, n in shapes:
            x = torch.randn(rows, k).to(dtype)
            w = torch.randn(n, k).to(dtype)
            with torch.inference_mode():
                F.linear(x, w)
                reps, start = 0, time.perf_counter()
                while (elapsed := time.perf_counter() - start) < PROBE_SECONDS or reps < 2:
                    F.linear(x, w)
                    reps += 1
            flops += 2.0 * rows * k * n
            seconds += elapsed / reps
        rates[dtype] = flops / seconds / 1e9
    return Probe(rates[torch.float32], rates[torch.bfloat16])


def _machine() -> str:
    """What decides the rates: the CPU (model name and flags), torch, and the thread count."""
    import torch

    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            info = f.read()
        lines = {ln.split(":", 1)[0].strip(): ln.split(":", 1)[1].strip() for ln in
                 info.splitlines() if ":" in ln}  # fmt: skip
        cpu = f"{lines.get('model name', cpu)} {lines.get('flags', '')}"
    except OSError:
        pass
    return f"{cpu}|torch {torch.__version__}|threads {torch.get_num_threads()}"


def cpu_prefers_bf16(config: Any, rows: int, *, purpose: str) -> bool:
    """Whether bfloat16 computes `config`'s layers faster than float32 on this CPU, at `rows`
    rows per step; measured once per machine and shapes, then read from the cache."""
    from irpo.models import cache_dir

    if os.environ.get("IRPO_CPU_DTYPE") in ("float32", "bfloat16"):
        return os.environ["IRPO_CPU_DTYPE"] == "bfloat16"  # fixed for the whole environment
    shapes = linear_shapes(config)
    key = hashlib.sha256(f"{_machine()}|{shapes}|{rows}".encode()).hexdigest()[:20]
    path = cache_dir() / "precision" / f"{key}.json"
    probe: Probe | None = None
    try:
        probe = Probe(**json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        probe = None
    measured = probe is None
    if probe is None:
        probe = measure(shapes, rows)
        try:
            from irpo.records import write_text

            path.parent.mkdir(parents=True, exist_ok=True)
            write_text(path, json.dumps(probe.__dict__))
        except OSError:
            pass  # an unwritable cache only means measuring again next time
    log.info(
        "%s on CPU: %s (%s: bfloat16 %.0f GFLOP/s, float32 %.0f GFLOP/s, %.2fx; bfloat16 needs "
        "%.2fx)",
        purpose,
        "bfloat16" if probe.prefers_bf16 else "float32",
        "measured" if measured else f"measured before, {path}",
        probe.bf16_gflops,
        probe.fp32_gflops,
        probe.ratio,
        MARGIN,
    )
    return probe.prefers_bf16
