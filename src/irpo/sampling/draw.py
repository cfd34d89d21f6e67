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
    logits: torch.Tensor,
    uniforms: torch.Tensor,
    temperature: float,
    top_p: float = 1.0,
    *,
    overwrite: bool = False,
) -> torch.Tensor:
    """Next token per row.

    logits: (B, V) next-token logits. uniforms: (B,) float64 in [0, 1), one per row.
    Returns (B,) int64 token ids. Temperature 0 is greedy (ties go to the lowest id);
    otherwise tokens are drawn from softmax(logits / temperature), restricted to the smallest
    set of most likely tokens whose mass reaches `top_p` (nucleus sampling) when top_p < 1.
    With `overwrite`, float32 logits serve as scratch space (no vocabulary-sized copies).
    """
    if temperature == 0:
        return logits.argmax(dim=-1)
    if overwrite and logits.dtype == torch.float32:
        weights = logits
    else:  # one float32 copy (bfloat16 logits: the conversion is the copy)
        weights = logits.to(torch.float32, copy=True)
    # exp((l - max) / T): the unnormalised softmax, computed in place
    weights.sub_(weights.amax(dim=-1, keepdim=True)).mul_(1.0 / temperature).exp_()
    u = uniforms.to(device=weights.device, dtype=weights.dtype).unsqueeze(-1)  # (B, 1)
    if top_p >= 1.0:
        return _inverse_cdf(weights, u)
    probs = weights.div_(weights.sum(dim=-1, keepdim=True))
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    before = sorted_probs.cumsum(dim=-1) - sorted_probs  # mass of the more likely tokens
    sorted_probs = sorted_probs.masked_fill(before >= top_p, 0.0)  # the first token always stays
    return order.gather(-1, _inverse_cdf(sorted_probs, u).unsqueeze(-1)).squeeze(-1)


def _inverse_cdf(weights: torch.Tensor, u: torch.Tensor, block: int = 256) -> torch.Tensor:
    """weights: (B, V) non-negative, unnormalised; u: (B, 1) in [0, 1). Returns (B,) indices.

    Two levels, to avoid a sequential cumulative sum over the whole vocabulary (the slowest
    part of sampling on CPU): find the block of `block` tokens where u * mass falls, then the
    token inside it. `right=True` returns the first index whose cdf exceeds the target, which
    never lands on a zero-weight token.
    """
    rows, vocab = weights.shape
    whole = vocab // block * block
    sums = weights[:, :whole].reshape(rows, -1, block).sum(dim=-1)  # (B, whole / block)
    if whole < vocab:
        sums = torch.cat([sums, weights[:, whole:].sum(dim=-1, keepdim=True)], dim=1)
    cdf = sums.cumsum(dim=-1)  # (B, blocks)
    target = u * cdf[:, -1:]
    b = torch.searchsorted(cdf, target, right=True).clamp_(max=cdf.shape[1] - 1)  # (B, 1)
    before = torch.where(b > 0, cdf.gather(1, (b - 1).clamp(min=0)), torch.zeros_like(target))
    index = b * block + torch.arange(block, device=weights.device)  # (B, block)
    inside = weights.gather(1, index.clamp(max=vocab - 1)).masked_fill_(index >= vocab, 0.0)
    inside = inside.cumsum(dim=-1)
    j = torch.searchsorted(inside, target - before, right=True)
    # Rounding can push the target past the block's last token with mass: stop there.
    last = (inside < inside[:, -1:]).sum(dim=-1, keepdim=True)
    return (b * block + torch.minimum(j, last)).squeeze(-1)
