"""The number format a CPU computes a model fastest in, measured on the machine itself.

Which of float32 and bfloat16 wins on a CPU depends on the CPU: with AVX512-BF16 a bfloat16
matrix product runs 2-3x the float32 one (oneDNN), with AMX about 7x, without either bfloat16
is emulated and slower (docs/BENCHMARKS.md has the three kinds of machine). So `model.dtype: auto` (sampling and
evaluation) and `train.mixed_precision: auto` (bf16 autocast over float32 master weights) ask
`cpu_prefers_bf16`, which times a step of the model itself in both formats (a copy with two
decoder layers built from its config, and its LM head, at the rows a step computes; `measure`)
for a few tenths of a second each, and caches the answer per machine, torch version, thread
count and model shape under IRPO_CACHE. The choice and both rates are logged. A `model.dtype` or `train.mixed_precision`
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
    """What the probe measured: one step of the model, in its matrix products' GFLOP per
    second, in each format (so the two rates compare the step times)."""

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


PROBE_LAYERS = 2
"""Decoder layers of the model built for the probe (its own config, random weights)."""


def measure(config: Any, rows: int, *, train: bool = False, length: int = 256) -> Probe:
    """The model's step time in float32 and in bfloat16, as model GFLOP/s.

    A copy of the model with `PROBE_LAYERS` decoder layers is built from `config` (random
    weights: the time does not depend on them) and its layers run on `rows` positions: one
    position per row, as a decoding step, or (`train`) sequences of `length` positions with
    the backward pass, under bf16 autocast for the bf16 side, as training runs. Norms,
    activations and format conversions count, not only the matrix products: on a small model
    they decide (the demo's 1M-parameter model samples slower in bfloat16 although its matrix
    products alone are faster). The LM head is timed apart; the step is extrapolated to the
    model's depth: layers x (its layer time) + head.
    """
    import copy

    import torch
    from transformers import AutoModelForCausalLM

    small = copy.deepcopy(config)
    depth = int(config.num_hidden_layers)
    small.num_hidden_layers = min(depth, PROBE_LAYERS)
    if getattr(small, "layer_types", None):
        small.layer_types = small.layer_types[: small.num_hidden_layers]
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(small, dtype=torch.float32)
    model.config.use_cache = False
    base = model.base_model
    head = model.get_output_embeddings().weight.detach()
    batch, length = (max(1, rows // length), length) if train else (rows, 1)
    h = int(config.hidden_size)
    flops = 2.0 * batch * length * (depth * _layer_params(config) + head.numel())
    flops *= 3 if train else 1
    step = {}
    for dtype in (torch.float32, torch.bfloat16):
        layers, logits = _step_time(base, head, batch, length, h, dtype, train)
        step[dtype] = depth / small.num_hidden_layers * layers + logits
    return Probe(flops / step[torch.float32] / 1e9, flops / step[torch.bfloat16] / 1e9)


def _layer_params(config: Any) -> int:
    """Weights of one decoder layer's matrix products (q, k, v, o; gate, up, down)."""
    (h, q), (_, kv), (_, inter), _, _ = linear_shapes(config)
    return 2 * h * q + 2 * h * kv + 3 * h * inter


def _step_time(
    base: Any, head: Any, batch: int, length: int, h: int, dtype: Any, train: bool
) -> tuple[float, float]:
    """Seconds of the probe model's decoder layers and of its LM head, in `dtype`."""
    import torch
    import torch.nn.functional as F

    x = torch.randn(batch, length, h)
    if train:
        return (
            _timed(lambda: _train_step(base, x, dtype)),
            _timed(lambda: _train_head(x, head, dtype)),
        )
    m = base.to(dtype)
    xd, w = x.to(dtype), head.to(dtype)
    try:
        with torch.inference_mode():
            return (
                _timed(lambda: m(inputs_embeds=xd, use_cache=False)),
                _timed(lambda: F.linear(xd, w)),
            )
    finally:
        base.to(torch.float32)


def _timed(fn: Any) -> float:
    """Seconds per call: a warm-up call, then calls for at least PROBE_SECONDS (3 or more)."""
    fn()
    reps, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < PROBE_SECONDS or reps < 3:
        fn()
        reps += 1
    return elapsed / reps


def _train_step(base: Any, x: Any, dtype: Any) -> None:
    import torch

    x = x.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        out = base(inputs_embeds=x, use_cache=False).last_hidden_state
    out.float().sum().backward()
    base.zero_grad(set_to_none=True)


def _train_head(x: Any, head: Any, dtype: Any) -> None:
    import torch
    import torch.nn.functional as F

    w = head.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        logits = F.linear(x, w)
    logits.float().logsumexp(-1).sum().backward()


def cpu_info() -> tuple[str, str | None]:
    """The CPU's model name and its flags as /proc/cpuinfo spells them (None where it cannot be
    read; the model is then `platform.processor()`)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            info = f.read()
    except OSError:
        return platform.processor(), None
    lines = {ln.split(":", 1)[0].strip(): ln.split(":", 1)[1].strip() for ln in
             info.splitlines() if ":" in ln}  # fmt: skip
    return lines.get("model name", platform.processor()), lines.get("flags", "")


def _machine() -> str:
    """What decides the rates: the CPU (model name and flags), torch, and the thread count."""
    import torch

    model, flags = cpu_info()
    cpu = model if flags is None else f"{model} {flags}"
    return f"{cpu}|torch {torch.__version__}|threads {torch.get_num_threads()}"


def cpu_prefers_bf16(
    config: Any, rows: int, *, purpose: str, train: bool = False, length: int = 256
) -> bool:
    """Whether a step of `config`'s model at `rows` positions (`train`: forward and backward)
    runs faster in bfloat16 than in float32 on this CPU; measured once per machine and model
    shape, then read from the cache."""
    from irpo.models import cache_dir

    if os.environ.get("IRPO_CPU_DTYPE") in ("float32", "bfloat16"):
        return os.environ["IRPO_CPU_DTYPE"] == "bfloat16"  # fixed for the whole environment
    shape = (linear_shapes(config), config.num_hidden_layers, config.model_type, train, rows,
             length if train else 1)  # fmt: skip
    key = hashlib.sha256(f"{_machine()}|{shape}|v2".encode()).hexdigest()[:20]
    path = cache_dir() / "precision" / f"{key}.json"
    probe: Probe | None = None
    try:
        probe = Probe(**json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        probe = None
    measured = probe is None
    if probe is None:
        probe = measure(config, rows, train=train, length=length)
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
