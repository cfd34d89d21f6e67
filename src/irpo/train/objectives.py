"""What one micro-batch contributes: a loss to back-propagate and metrics to log.

An objective maps (scorer, examples) to (scalar loss, detached scalar metrics, real tokens). The
training loop does not know which one it runs: IRPO and DPO (IRPO with alpha = 0) score pairs,
SFT scores single responses.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from irpo.losses import NllNormalization, irpo_loss, sft_loss
from irpo.records import Pair
from irpo.train.batching import SftExample, pair_rows, reference_tensors, sft_rows


@dataclass(frozen=True)
class MicroBatchResult:
    loss: Tensor
    """Scalar: the mean loss over the micro-batch's examples."""
    metrics: dict[str, Tensor]
    """Detached scalars, averaged over the micro-batch."""
    num_tokens: int
    """Real (non-pad) tokens processed."""


Objective = Callable[[Any, Sequence[Any], torch.device], MicroBatchResult]


def preference_objective(
    *, beta: float, alpha: float, nll_normalization: NllNormalization = "sequence"
) -> Objective:
    """IRPO Eq. 1 on pairs (alpha = 0: DPO), chosen and rejected in one forward of 2B rows."""

    def objective(scorer: Any, pairs: Sequence[Pair], device: torch.device) -> MicroBatchResult:
        rows = pair_rows(pairs).to(device)
        logps = scorer(rows.input_ids, rows.response_mask)  # [2B]: chosen rows, then rejected
        b = len(pairs)
        ref_chosen, ref_rejected = reference_tensors(pairs)
        loss, metrics = irpo_loss(
            logps[:b],
            logps[b:],
            ref_chosen.to(device),
            ref_rejected.to(device),
            rows.response_lengths[:b],
            beta=beta,
            alpha=alpha,
            nll_normalization=nll_normalization,
            rejected_lengths=rows.response_lengths[b:],
        )
        return MicroBatchResult(loss, metrics, rows.num_tokens)

    return objective


def sft_objective() -> Objective:
    """Per-sequence mean NLL of the responses (the paper's SFT and STaR baselines)."""

    def objective(
        scorer: Any, examples: Sequence[SftExample], device: torch.device
    ) -> MicroBatchResult:
        rows = sft_rows(examples).to(device)
        logps = scorer(rows.input_ids, rows.response_mask)  # [B]
        loss = sft_loss(logps, rows.response_lengths)
        with torch.no_grad():
            metrics = {
                "loss": loss.detach(),
                "nll": loss.detach(),
                "policy_logps": logps.detach().mean(),
                "policy_logps_per_token": (logps.detach() / rows.response_lengths).mean(),
            }
        return MicroBatchResult(loss, metrics, rows.num_tokens)

    return objective
