"""Choosing the next token from logits with one uniform number per sequence and step.

Inverse-CDF sampling: token i is chosen when u * mass falls in [cdf[i-1], cdf[i]), which draws
i with probability p_i. Each row uses only its own uniform, so a sequence's choices do not
depend on the other rows of the batch, and one number per step is cheap to give every sequence
its own random stream (a full Gumbel-noise vector per row would cost a vocabulary of draws).
"""

from __future__ import annotations

import torch


def uniform_stream(seed: int, length: int) -> torch.Tensor:
    """`length` uniforms in [0, 1) from a generator seeded with `seed` alone; shape (length,)."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    return torch.rand(length, generator=generator, dtype=torch.float64)


def draw_tokens(
    logits: torch.Tensor, uniforms: torch.Tensor, temperature: float, top_p: float = 1.0
) -> torch.Tensor:
    """Next token per row.

    logits: (B, V) next-token logits. uniforms: (B,) float64 in [0, 1), one per row.
    Returns (B,) int64 token ids. Temperature 0 is greedy (ties go to the lowest id);
    otherwise tokens are drawn from softmax(logits / temperature), restricted to the smallest
    set of most likely tokens whose mass reaches `top_p` (nucleus sampling) when top_p < 1.
    """
    if temperature == 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    u = uniforms.to(device=probs.device, dtype=probs.dtype).unsqueeze(-1)  # (B, 1)
    if top_p >= 1.0:
        return _inverse_cdf(probs, u)
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    before = sorted_probs.cumsum(dim=-1) - sorted_probs  # mass of the more likely tokens
    sorted_probs = sorted_probs.masked_fill(before >= top_p, 0.0)  # the first token always stays
    return order.gather(-1, _inverse_cdf(sorted_probs, u).unsqueeze(-1)).squeeze(-1)


def _inverse_cdf(probs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """probs: (B, V) non-negative, unnormalised; u: (B, 1) in [0, 1). Returns (B,) indices.

    `right=True` returns the first index whose cdf exceeds u * mass, which never lands on a
    zero-probability token.
    """
    cdf = probs.cumsum(dim=-1)
    target = u * cdf[:, -1:]
    index = torch.searchsorted(cdf, target, right=True).squeeze(-1)
    return index.clamp_(max=probs.shape[-1] - 1)
