"""Token rows for training: prompt + response concatenated, right-padded, with a response mask.

Every row is `prompt_ids + response_ids`, exactly the stored tokens (never a re-tokenisation).
Rows are right-padded, so each real token sits at its natural position and attends only to real
tokens before it: no attention mask is needed, and the model runs its fast causal-attention path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from irpo.errors import IrpoError
from irpo.records import Pair


@dataclass(frozen=True)
class SftExample:
    """One supervised example: the prompt tokens and the response tokens to learn."""

    prompt_ids: list[int]
    response_ids: list[int]


@dataclass(frozen=True)
class TokenRows:
    """A right-padded batch of N rows.

    input_ids: [N, T] prompt + response tokens, then `pad_id`.
    response_mask: [N, T] bool, true on response tokens (the tokens whose log-prob is scored).
    response_lengths: [N] int64, response tokens per row (the |y| of IRPO Eq. 1).
    num_tokens: real (non-pad) tokens in the batch, for throughput.
    """

    input_ids: Tensor
    response_mask: Tensor
    response_lengths: Tensor
    num_tokens: int

    def to(self, device: torch.device | str) -> TokenRows:
        return TokenRows(
            self.input_ids.to(device),
            self.response_mask.to(device),
            self.response_lengths.to(device),
            self.num_tokens,
        )


def build_rows(
    prompts: Sequence[Sequence[int]], responses: Sequence[Sequence[int]], pad_id: int = 0
) -> TokenRows:
    """Concatenate each prompt with its response and right-pad the rows to the longest."""
    if len(prompts) != len(responses) or not prompts:
        raise ValueError(
            f"need as many prompts as responses (>0), got {len(prompts)}, {len(responses)}"
        )
    width = max(len(p) + len(r) for p, r in zip(prompts, responses, strict=True))
    input_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    response_mask = torch.zeros((len(prompts), width), dtype=torch.bool)
    for i, (p, r) in enumerate(zip(prompts, responses, strict=True)):
        if not p or not r:
            raise IrpoError(
                f"row {i}: empty {'prompt' if not p else 'response'}: every example needs at least "
                "one prompt token (the first response token is predicted from it) and one response token"
            )
        input_ids[i, : len(p) + len(r)] = torch.tensor([*p, *r], dtype=torch.long)
        response_mask[i, len(p) : len(p) + len(r)] = True
    lengths = torch.tensor([len(r) for r in responses], dtype=torch.long)
    num_tokens = sum(len(p) + len(r) for p, r in zip(prompts, responses, strict=True))
    return TokenRows(input_ids, response_mask, lengths, num_tokens)


def pair_rows(pairs: Sequence[Pair], pad_id: int = 0) -> TokenRows:
    """2B rows for B pairs: the chosen responses (rows 0..B-1), then the rejected (B..2B-1).

    Chosen and rejected share one forward pass, as in the DPO reference implementation's
    `concatenated_forward`.
    """
    prompts = [p.prompt_ids for p in pairs] * 2
    responses = [p.chosen_ids for p in pairs] + [p.rejected_ids for p in pairs]
    return build_rows(prompts, responses, pad_id)


def sft_rows(examples: Sequence[SftExample], pad_id: int = 0) -> TokenRows:
    """One row per example."""
    return build_rows([e.prompt_ids for e in examples], [e.response_ids for e in examples], pad_id)


def reference_tensors(pairs: Sequence[Pair]) -> tuple[Tensor, Tensor]:
    """The stored reference log-probs as two [B] float32 tensors (chosen, rejected)."""
    missing = [
        p.problem_id for p in pairs if p.ref_chosen_logp is None or p.ref_rejected_logp is None
    ]
    if missing:
        raise IrpoError(
            f"{len(missing)} pair(s) lack reference log-probs (first: problem {missing[0]}); "
            "compute them with compute_reference_logps before training"
        )
    chosen = torch.tensor([p.ref_chosen_logp for p in pairs], dtype=torch.float32)
    rejected = torch.tensor([p.ref_rejected_logp for p in pairs], dtype=torch.float32)
    return chosen, rejected
