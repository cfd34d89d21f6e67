"""A preallocated key/value cache for many sequences that share prompts, and its attention.

Two buffers per layer:
- the prompt pool: each running question's prompt once, left-aligned (columns [0, p));
- the generated part: one row per running sequence, all right-aligned on a shared column `cur`
  where each decoding step writes every row's new key/value; a row's first generated column is
  its `start`.
Keys are stored transposed, (slots, kv_heads, head_dim, columns), values as (slots, kv_heads,
columns, head_dim): both products of attention are then plain (not transposed) matrix
products, which MKL runs 35 % faster on these thin shapes here.
Running rows fill rows [0, n) and their prompts fill pool slots [0, a): when one finishes, the
last one is moved into its place, so attention reads plain views, never gathered copies.

Attention of a decoding step (`slot_attention`, one query per row) is split in two parts that
share one softmax ("cascade" attention): the rows of a question are grouped so that the
question's prompt keys and values are read once for all its samples, and each row reads its
own generated tokens. With N samples per question the prompt traffic falls N-fold, and the
prompt part becomes a (N x group) x head_dim matrix product instead of N thin ones.

This cache is what lets the decoder (`irpo.sampling.transformers_engine`) refill the batch as sequences finish
(continuous batching), prefill each prompt once, and append a token without the per-step
`torch.cat` of `DynamicCache` (40 % of a SmolLM2-135M decoding step at batch 64 here).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from irpo.errors import IrpoError

ATTENTION = "irpo_slots"
"""Name under which `slot_attention` is registered in transformers' AttentionInterface."""

Layers = list[tuple[torch.Tensor, torch.Tensor]]
"""Per layer: (keys, values)."""


class PrefillCache:
    """Stands in for a transformers cache during a prompt forward: records each layer's keys and
    values (batch, kv_heads, prompt_len, head_dim) and hands them back unchanged."""

    def __init__(self) -> None:
        self.keys: dict[int, torch.Tensor] = {}
        self.values: dict[int, torch.Tensor] = {}

    def update(
        self,
        key_states: torch.Tensor,
        value_states: torch.Tensor,
        layer_idx: int,
        *_: Any,
        **__: Any,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        self.keys[layer_idx] = key_states
        self.values[layer_idx] = value_states
        return key_states, value_states

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return 0

    def layers(self) -> Layers:
        return [(self.keys[i], self.values[i]) for i in sorted(self.keys)]


@dataclass
class StepPlan:
    """Where each running row's prompt is, for one decoding step (shared by all layers).

    Row i's prompt is pool slot `prompt_index[i]`; it is the `rank[i]`-th row of that prompt
    (< `group`, the largest number of running rows of one prompt). `mask` is additive,
    (n, 1, 1, prompt_width + generated width): prompt columns [0, prompt_width), then the
    generated columns [lo, hi) of the cache.
    """

    prompts: int
    group: int
    prompt_width: int
    prompt_index: torch.Tensor
    rank: torch.Tensor
    mask: torch.Tensor


class SlotCache:
    """Key/value buffers for `num_rows` running sequences and `num_prompts` prompts.

    The decoder sets `n`, the generated columns [`lo`, `hi`) that attention reads (from the
    first column any running row uses to `cur`, or the whole buffer: `hi` > `cur`, the columns
    after `cur` masked) and `plan` before each forward; `update` writes the step's keys/values
    at column `cur` and returns the views (n, kv_heads, hi - lo, head_dim) of the generated part.
    """

    def __init__(
        self, num_rows: int, num_prompts: int, prompt_capacity: int, capacity: int
    ) -> None:
        self.num_rows = num_rows
        self.num_prompts = num_prompts
        self.prompt_capacity = prompt_capacity
        self.capacity = capacity
        self.prompt_keys: list[torch.Tensor] = []
        self.prompt_values: list[torch.Tensor] = []
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.n = 0
        self.lo = 0
        self.hi = 1
        self.cur = 0
        self.plan: StepPlan | None = None
        self._scratch: torch.Tensor | None = None

    def scratch(self, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        """A tensor of `shape` on a buffer reused by every layer and step (attention's grids).

        Its contents are whatever the last user left there, always finite: the buffer starts
        zeroed and only ever holds queries and probabilities. Filling a fresh zeroed grid per
        layer instead cost 3 % of a float32 decoding step here (`fill_`).
        """
        size = 1
        for dim in shape:
            size *= dim
        buffer = self._scratch
        if buffer is None or buffer.numel() < size or buffer.dtype != like.dtype:
            buffer = like.new_zeros(max(size, 2 * buffer.numel() if buffer is not None else 0))
            self._scratch = buffer
        return buffer[:size].view(shape)

    @property
    def allocated(self) -> bool:
        return bool(self.keys)

    def allocate(self, prompt_layers: Layers) -> None:
        """Zeroed buffers for layers whose prompt keys/values are (1, kv_heads, p, head_dim)."""
        for k, v in prompt_layers:
            kv, dk, dv = k.shape[1], k.shape[3], v.shape[3]
            self.prompt_keys.append(k.new_zeros(self.num_prompts, kv, dk, self.prompt_capacity))
            self.prompt_values.append(v.new_zeros(self.num_prompts, kv, self.prompt_capacity, dv))
            self.keys.append(k.new_zeros(self.num_rows, kv, dk, self.capacity))
            self.values.append(v.new_zeros(self.num_rows, kv, self.capacity, dv))

    def nbytes(self) -> int:
        buffers = (*self.prompt_keys, *self.prompt_values, *self.keys, *self.values)
        return sum(t.numel() * t.element_size() for t in buffers)

    def update(
        self,
        key_states: torch.Tensor,
        value_states: torch.Tensor,
        layer_idx: int,
        *_: Any,
        **__: Any,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """key_states, value_states: (n, kv_heads, 1, head_dim), the step's new token.

        Returns the transposed keys (n, kv_heads, head_dim, G) and the values
        (n, kv_heads, G, head_dim) of columns [lo, hi): only `slot_attention` reads them.
        """
        keys, values = self.keys[layer_idx], self.values[layer_idx]
        keys[: self.n, :, :, self.cur] = key_states[:, :, 0]
        values[: self.n, :, self.cur] = value_states[:, :, 0]
        window = slice(self.lo, self.hi)
        return keys[: self.n, :, :, window], values[: self.n, :, window]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.cur

    def write_prompt(self, slot: int, prompt_layers: Layers) -> None:
        """Store one prompt's keys/values (1, kv_heads, p, head_dim) in pool slot `slot`."""
        for (k, v), keys, values in zip(
            prompt_layers, self.prompt_keys, self.prompt_values, strict=True
        ):
            keys[slot, :, :, : k.shape[2]] = k[0].transpose(-1, -2)
            values[slot, :, : v.shape[2]] = v[0]

    def move_prompt(self, src: int, dst: int, length: int) -> None:
        for keys, values in zip(self.prompt_keys, self.prompt_values, strict=True):
            keys[dst, ..., :length] = keys[src, ..., :length]
            values[dst, :, :length] = values[src, :, :length]

    def move(self, src: int, dst: int, lo: int) -> None:
        """Copy row `src`'s generated columns [lo, cur) into row `dst`."""
        for keys, values in zip(self.keys, self.values, strict=True):
            keys[dst, ..., lo : self.cur] = keys[src, ..., lo : self.cur]
            values[dst, :, lo : self.cur] = values[src, :, lo : self.cur]

    def shift_left(self, shift: int, lo: int) -> None:
        """Move generated columns [lo, cur) of the running rows to [lo - shift, cur - shift)."""
        n, cur = self.n, self.cur
        for keys, values in zip(self.keys, self.values, strict=True):
            keys[:n, ..., lo - shift : cur - shift] = keys[:n, ..., lo:cur].clone()
            values[:n, :, lo - shift : cur - shift] = values[:n, :, lo:cur].clone()
        self.cur -= shift


def slot_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Attention for the slot cache, in transformers' AttentionInterface signature.

    query: (B, heads, q, d); key: (B, kv_heads, L, d); value: (B, kv_heads, L, dv);
    attention_mask: additive, (B, 1, q, L). Returns (B, q, heads, dv). A decoding step (the
    `slot_cache` keyword is the SlotCache) attends to the prompt pool and the generated part
    (module docstring); anything else (prompts) goes through SDPA.
    """
    for unsupported in ("softcap", "sliding_window", "s_aux"):
        if kwargs.get(unsupported) is not None:
            raise IrpoError(
                f"the transformers engine does not support attention with {unsupported}; "
                "use sampling.engine=vllm for this model"
            )
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    cache = kwargs.get("slot_cache")
    if isinstance(cache, SlotCache) and cache.plan is not None:
        layer: int = module.layer_idx  # type: ignore[assignment]
        out = _cascade(query * scale, key, value, cache, layer, cache.plan)
        return out, None
    out = F.scaled_dot_product_attention(
        query,
        key,
        value,
        attn_mask=attention_mask,
        scale=scale,
        is_causal=attention_mask is None,
        enable_gqa=key.shape[1] != query.shape[1],
    )
    return out.transpose(1, 2).contiguous(), None


def _cascade(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    cache: SlotCache,
    layer: int,
    plan: StepPlan,
    softmax_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """One decoding step's attention over shared prompts and per-row generated tokens.

    query: (n, heads, 1, d), already scaled; key: (n, kv_heads, d, G) (transposed) and value:
    (n, kv_heads, G, dv), the generated part. Query heads are grouped by their key/value head (heads h = kv * g + j, the order of
    `repeat_kv`). The prompt part runs on a grid (prompts, kv_heads, group * g, .) where row i
    sits at (prompt_index[i], rank[i]); empty grid places hold stale finite values (the grids
    live in `cache.scratch`) and are never read back.
    `softmax_dtype`: the format of the mask add and softmax (default: the scores'; another is
    measured in bench/bench_attention.py). Returns (n, 1, heads, dv).
    """
    n, heads, _, d = query.shape
    kv_heads, dv = key.shape[1], value.shape[-1]
    g = heads // kv_heads
    a, c, width = plan.prompts, plan.group, plan.prompt_width
    where = (plan.prompt_index, slice(None), plan.rank)
    q = query.view(n, kv_heads, g, d)

    grid = cache.scratch((a, kv_heads, c, g, d), q)
    grid[where] = q
    prompt_keys = cache.prompt_keys[layer][:a, ..., :width]  # (a, kv_heads, d, width)
    prompt_scores = torch.matmul(grid.view(a, kv_heads, c * g, d), prompt_keys)
    prompt_scores = prompt_scores.view(a, kv_heads, c, g, width)[where]  # (n, kv_heads, g, width)
    own_scores = torch.matmul(q, key)  # (n, kv_heads, g, G)
    scores = torch.cat([prompt_scores, own_scores], dim=-1)
    if softmax_dtype is not None:
        scores = scores.to(softmax_dtype)
    probs = scores.add_(plan.mask).softmax(dim=-1).to(query.dtype)

    grid_probs = cache.scratch((a, kv_heads, c, g, width), probs)
    grid_probs[where] = probs[..., :width]
    prompt_values = cache.prompt_values[layer][:a, :, :width]  # (a, kv_heads, width, dv)
    from_prompt = torch.matmul(grid_probs.view(a, kv_heads, c * g, width), prompt_values)
    out = from_prompt.view(a, kv_heads, c, g, dv)[where]  # (n, kv_heads, g, dv)
    out += torch.matmul(probs[..., width:], value)
    return out.view(n, 1, heads, dv)


@contextmanager
def slot_attention_enabled(model: Any) -> Iterator[None]:
    """Route the model's attention through `slot_attention` for the duration of the block."""
    from transformers import AttentionInterface

    AttentionInterface.register(ATTENTION, slot_attention)
    previous = model.config._attn_implementation
    model.set_attn_implementation(ATTENTION)
    try:
        yield
    finally:
        model.set_attn_implementation(previous)


def check_supported(config: Any, max_len: int) -> None:
    """Refuse models whose attention the slot cache cannot represent."""
    layer_types = set(getattr(config, "layer_types", None) or ["full_attention"])
    window = getattr(config, "sliding_window", None)
    limited = (
        isinstance(window, int) and getattr(config, "use_sliding_window", True) and window < max_len
    )
    if layer_types - {"full_attention"} or limited:
        raise IrpoError(
            f"model type {getattr(config, 'model_type', '?')!r} uses attention layers other than "
            f"full causal attention ({sorted(layer_types)}, sliding_window={window}); the "
            "transformers engine supports full attention only: use sampling.engine=vllm"
        )
    if getattr(config, "is_encoder_decoder", False):
        raise IrpoError("encoder-decoder models are not causal LMs; irpo samples from causal LMs")
