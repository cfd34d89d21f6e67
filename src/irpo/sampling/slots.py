"""A preallocated key/value cache with one slot per running sequence, and the attention reading it.

Layout (per layer): keys and values of shape (slots, kv_heads, capacity, head_dim). All running
sequences are right-aligned on a shared column `cur`: a sequence whose prompt has p tokens
occupies columns [cur - p, cur) when it joins, and every decoding step writes each sequence's new
key/value at column `cur`. A sequence's first column is its `start`; columns before it belong to
earlier occupants of the slot and are masked out. Running sequences always fill slots
[0, n): a finished sequence's slot is refilled by moving the last one into it, so a step's
attention reads plain views of the buffers, never a gathered copy.

This is what lets the decoder (`irpo.sampling.hf`) refill the batch with new sequences as
others finish (continuous batching), compute each prompt once for all its samples, and append
a token without the per-step `torch.cat` of `DynamicCache` (which cost 40 % of a SmolLM2-135M
decoding step at batch 64 here).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F

from irpo.errors import IrpoError

ATTENTION = "irpo_slots"
"""Name under which `slot_attention` is registered in transformers' AttentionInterface."""


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

    def layers(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [(self.keys[i], self.values[i]) for i in sorted(self.keys)]


class SlotCache:
    """Per-layer key/value buffers for `num_slots` sequences of at most `capacity` columns.

    The decoder sets `n` (running sequences, in slots [0, n)) and `lo` (the first column any of
    them uses) before each forward; `update` writes the step's keys/values at column `cur` and
    returns the views (n, kv_heads, cur + 1 - lo, head_dim) that attention reads.
    """

    def __init__(self, num_slots: int, capacity: int) -> None:
        self.num_slots = num_slots
        self.capacity = capacity
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.n = 0
        self.lo = 0
        self.cur = 0

    @property
    def allocated(self) -> bool:
        return bool(self.keys)

    def allocate(self, prompt_layers: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Allocate zeroed buffers shaped like the prompt keys/values of each layer."""
        for k, v in prompt_layers:
            self.keys.append(k.new_zeros(self.num_slots, k.shape[1], self.capacity, k.shape[3]))
            self.values.append(v.new_zeros(self.num_slots, v.shape[1], self.capacity, v.shape[3]))

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.keys, *self.values))

    def update(
        self,
        key_states: torch.Tensor,
        value_states: torch.Tensor,
        layer_idx: int,
        *_: Any,
        **__: Any,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """key_states, value_states: (n, kv_heads, 1, head_dim), the step's new token."""
        keys, values = self.keys[layer_idx], self.values[layer_idx]
        keys[: self.n, :, self.cur] = key_states[:, :, 0]
        values[: self.n, :, self.cur] = value_states[:, :, 0]
        window = slice(self.lo, self.cur + 1)
        return keys[: self.n, :, window], values[: self.n, :, window]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.cur

    def write_prompt(
        self, first_slot: int, count: int, prompt_layers: list[tuple[torch.Tensor, torch.Tensor]]
    ) -> None:
        """Copy one prompt's keys/values (1, kv_heads, p, head_dim) into `count` slots at
        columns [cur - p, cur): the prompt is computed once and shared by its samples."""
        for (k, v), keys, values in zip(prompt_layers, self.keys, self.values, strict=True):
            p = k.shape[2]
            rows = slice(first_slot, first_slot + count)
            keys[rows, :, self.cur - p : self.cur] = k
            values[rows, :, self.cur - p : self.cur] = v

    def move(self, src: int, dst: int, lo: int) -> None:
        """Copy slot `src`'s used columns [lo, cur) into slot `dst`."""
        for buf in (*self.keys, *self.values):
            buf[dst, :, lo : self.cur] = buf[src, :, lo : self.cur]

    def shift_left(self, shift: int, lo: int) -> None:
        """Move columns [lo, cur) of the running slots to [lo - shift, cur - shift)."""
        for buf in (*self.keys, *self.values):
            used = buf[: self.n, :, lo : self.cur].clone()
            buf[: self.n, :, lo - shift : self.cur - shift] = used
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
    attention_mask: additive, (B, 1, q, L). Returns (B, q, heads, dv).
    A decoding step (q == 1) groups the query heads by their key/value head (grouped-query
    attention, heads h = kv * group + j as in `repeat_kv`) and multiplies against the cache
    views directly: no copy of the keys/values, where SDPA with a mask would repeat them per
    head. Prompts (q > 1) go through SDPA.
    """
    for unsupported in ("softcap", "sliding_window", "s_aux"):
        if kwargs.get(unsupported) is not None:
            raise IrpoError(
                f"the transformers engine does not support attention with {unsupported}; "
                "use sampling.engine=vllm for this model"
            )
    batch, heads, q_len, head_dim = query.shape
    kv_heads = key.shape[1]
    scale = scaling if scaling is not None else head_dim**-0.5
    if q_len == 1:
        grouped = (query * scale).view(batch, kv_heads, heads // kv_heads, head_dim)
        scores = torch.matmul(grouped, key.transpose(-1, -2))  # (B, kv_heads, group, L)
        if attention_mask is not None:
            scores = scores + attention_mask
        out = torch.matmul(scores.softmax(dim=-1), value)  # (B, kv_heads, group, dv)
        return out.reshape(batch, 1, heads, value.shape[-1]), None
    out = F.scaled_dot_product_attention(
        query,
        key,
        value,
        attn_mask=attention_mask,
        scale=scale,
        is_causal=attention_mask is None,
        enable_gqa=kv_heads != heads,
    )
    return out.transpose(1, 2).contiguous(), None


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
