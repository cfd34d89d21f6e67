"""Summed response log-probs of a causal LM, computing logits only where they are needed.

A row is prompt + response; only the response tokens are scored (IRPO Eq. 1 excludes the prompt),
so the [N, T, V] logits of a full forward are mostly wasted: with a 500-token prompt, a
250-token response and a 128k vocabulary they are the largest tensor of the step. The scorer
selects the hidden states that predict response tokens *before* the output layer, so the
logits are [M, V] with M the number of response tokens.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import Tensor, nn

from irpo.losses import sequence_logps

log = logging.getLogger(__name__)


class SequenceScorer(nn.Module):
    """A causal LM whose forward returns each row's summed response log-probability.

    It is a module (not a function) so that `accelerate` wraps it: the whole computation then
    runs inside the DDP / FSDP / DeepSpeed forward, where gradients are synchronised and sharded
    parameters are gathered.

    Response-only logits: a forward pre-hook on the output embeddings (`lm_head`) hands it only
    the hidden states at positions t whose next token is a response token. The model's own
    forward still runs, so whatever it does to the logits afterwards (Gemma's soft-capping,
    Cohere's and Granite's scaling: all elementwise) still applies. An architecture whose output
    layer is not reached that way (no output embeddings, or a forward that reshapes the logits)
    is detected on the first batch and scored from full logits from then on.
    """

    def __init__(self, model: Any, *, response_only: bool = True) -> None:
        super().__init__()
        self.model = model
        self.response_only = response_only and model.get_output_embeddings() is not None
        # FSDP's auto-wrap policy reads the layer classes to shard from the prepared module.
        self._no_split_modules = getattr(model, "_no_split_modules", None)

    def forward(self, input_ids: Tensor, response_mask: Tensor) -> Tensor:
        """Summed log-probs of the response tokens of each row.

        Args:
            input_ids: [N, T] right-padded prompt + response tokens.
            response_mask: [N, T] bool, true on response tokens.

        Returns:
            [N] float32: sum over response positions t of log p(input_ids[t] | input_ids[:t]).
        """
        # logits at position t predict token t + 1: shift the targets left by one.
        labels = input_ids[:, 1:]  # [N, T-1]
        target_mask = response_mask[:, 1:]  # [N, T-1]
        if self.response_only:
            logits = self._response_logits(input_ids, target_mask)
            if logits.dim() == 2:
                return _rows_sum(logits, labels[target_mask], target_mask)
            log.warning(
                "%s: the output layer did not take the selected hidden states; "
                "scoring from full logits from now on",
                type(self.model).__name__,
            )
            self.response_only = False
        else:
            logits = self.model(input_ids=input_ids, use_cache=False).logits
        return sequence_logps(logits[:, :-1], labels, target_mask)

    def _response_logits(self, input_ids: Tensor, target_mask: Tensor) -> Tensor:
        """[M, V] logits at the M positions of `target_mask`, or [N, T, V] if not possible."""
        n, t = input_ids.shape

        def select(_module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
            hidden = args[0] if args else None
            if not isinstance(hidden, Tensor) or hidden.shape[:2] != (n, t):
                return None  # not the call we expect: leave it alone (full logits come back)
            return (hidden[:, :-1][target_mask], *args[1:])  # [M, H]

        handle = self.model.get_output_embeddings().register_forward_pre_hook(select)
        try:
            logits: Tensor = self.model(input_ids=input_ids, use_cache=False).logits
        finally:
            handle.remove()
        return logits


def _rows_sum(logits: Tensor, targets: Tensor, target_mask: Tensor) -> Tensor:
    """Per-row sums of the M token log-probs.

    logits: [M, V] at the masked positions of target_mask [N, T-1] (row-major order);
    targets: [M] the tokens they predict. Returns [N] float32.
    """
    logits = logits.float()
    token_logps = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - logits.logsumexp(-1)
    rows = target_mask.nonzero()[:, 0]  # [M] row of each selected position
    out = torch.zeros(target_mask.shape[0], dtype=torch.float32, device=logits.device)
    return out.index_add(0, rows, token_logps)
