"""The IRPO objective as pure tensor functions: sequence log-probs, DPO, NLL, their sum, SFT.

IRPO Eq. 1 (Pang et al. 2024), for a pair (x, w, l) with reference model M_t:

    L = -log sigmoid( beta * [log M(w|x) - log M_t(w|x)] - beta * [log M(l|x) - log M_t(l|x)] )
        - alpha * log M(w|x) / |w|

`log M(y|x)` is the log-probability of the response summed over its tokens (prompt tokens
excluded) and |w| the winner's number of response tokens. Every term is its own function with
per-example outputs, so the trainer, the tests and an ablation can combine them freely. Nothing
here loads a model or reads a file.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

NllNormalization = Literal["sequence", "batch_token"]


def sequence_logps(logits: Tensor, labels: Tensor, mask: Tensor) -> Tensor:
    """Summed log-probability of the labelled tokens of each sequence.

    Args:
        logits: [B, T, V], already aligned so that `logits[:, t]` predicts `labels[:, t]`
            (i.e. the model's output shifted left by one relative to its input).
        labels: [B, T] token ids; positions outside `mask` may hold anything (pad, -100).
        mask: [B, T] bool (or 0/1), true on the response tokens to score.

    Returns:
        [B] float32: sum over masked t of log_softmax(logits[b, t])[labels[b, t]].

    Computed in float32 as `logit[label] - logsumexp(logits)`, which never materialises the full
    [B, T, V] log-softmax beside the logits (only a float32 copy when they are half precision).
    """
    mask = mask.bool()
    safe_labels = torch.where(mask, labels, torch.zeros_like(labels))  # -100 is not gatherable
    logits = logits.float()
    picked = torch.gather(logits, dim=-1, index=safe_labels.unsqueeze(-1)).squeeze(-1)  # [B, T]
    token_logps = picked - torch.logsumexp(logits, dim=-1)  # [B, T]
    return (token_logps * mask).sum(dim=-1)


def dpo_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    beta: float,
) -> Tensor:
    """The DPO term of IRPO Eq. 1, per pair.

    All inputs are [B] log-probs summed over response tokens (policy M_theta, reference M_t).

    Returns:
        [B]: -log sigmoid(beta * (pc - rc) - beta * (pr - rr)).
    """
    chosen_logratio = policy_chosen_logps - ref_chosen_logps
    rejected_logratio = policy_rejected_logps - ref_rejected_logps
    return -F.logsigmoid(beta * (chosen_logratio - rejected_logratio))


def nll_loss(policy_chosen_logps: Tensor, chosen_lengths: Tensor) -> Tensor:
    """The NLL term of IRPO Eq. 1, per pair: the winner's mean negative log-prob per token.

    Args:
        policy_chosen_logps: [B] summed log-probs of the winning responses.
        chosen_lengths: [B] their numbers of response tokens |w| (all >= 1).

    Returns:
        [B]: -log M(w|x) / |w| (the paper normalises per sequence, not per batch).
    """
    return -policy_chosen_logps / chosen_lengths.to(policy_chosen_logps.dtype)


def irpo_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    chosen_lengths: Tensor,
    *,
    beta: float,
    alpha: float,
    nll_normalization: NllNormalization = "sequence",
    rejected_lengths: Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """IRPO Eq. 1 averaged over the pairs of a batch, with detached metrics.

    Args:
        policy_chosen_logps, policy_rejected_logps: [B] summed response log-probs under M_theta.
        ref_chosen_logps, ref_rejected_logps: [B] the same under the reference M_t.
        chosen_lengths: [B] response token counts of the winners.
        beta: DPO temperature (paper: 0.1).
        alpha: NLL weight (paper: 1); 0 gives plain DPO exactly.
        nll_normalization: `sequence` (the paper): mean over pairs of -logp_w / |w|.
            `batch_token` (TRL's `sft` term, for comparison only): -sum(logp_w) / sum(|w|), which
            weighs long winners more.
        rejected_lengths: [B] optional; adds the rejected per-token log-prob to the metrics.

    Returns:
        (loss, metrics): loss is a scalar, mean_b(dpo_b) + alpha * nll. Metrics are detached
        scalars: loss, dpo, nll, chosen_rewards, rejected_rewards, margin, reward_accuracy,
        policy_chosen_logps, policy_rejected_logps, policy_chosen_logps_per_token and, with
        `rejected_lengths`, policy_rejected_logps_per_token.
    """
    dpo = dpo_loss(
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta
    ).mean()
    lengths = chosen_lengths.to(policy_chosen_logps.dtype)
    if nll_normalization == "sequence":
        nll = nll_loss(policy_chosen_logps, chosen_lengths).mean()
    elif nll_normalization == "batch_token":
        nll = -policy_chosen_logps.sum() / lengths.sum()
    else:
        raise ValueError(
            f"nll_normalization must be 'sequence' or 'batch_token', got {nll_normalization!r}"
        )
    loss = dpo + alpha * nll

    with torch.no_grad():
        # The implicit DPO rewards beta * log(M_theta / M_t), as in the DPO paper's logs.
        chosen_rewards = beta * (policy_chosen_logps - ref_chosen_logps)
        rejected_rewards = beta * (policy_rejected_logps - ref_rejected_logps)
        metrics = {
            "loss": loss.detach(),
            "dpo": dpo.detach(),
            "nll": nll.detach(),
            "chosen_rewards": chosen_rewards.mean(),
            "rejected_rewards": rejected_rewards.mean(),
            "margin": (chosen_rewards - rejected_rewards).mean(),
            "reward_accuracy": (chosen_rewards > rejected_rewards).float().mean(),
            "policy_chosen_logps": policy_chosen_logps.detach().mean(),
            "policy_rejected_logps": policy_rejected_logps.detach().mean(),
            "policy_chosen_logps_per_token": (policy_chosen_logps.detach() / lengths).mean(),
        }
        if rejected_lengths is not None:
            per_token = policy_rejected_logps.detach() / rejected_lengths.to(lengths.dtype)
            metrics["policy_rejected_logps_per_token"] = per_token.mean()
    return loss, metrics


def sft_loss(policy_logps: Tensor, lengths: Tensor) -> Tensor:
    """Supervised fine-tuning loss: the mean over sequences of -logp / length.

    Args:
        policy_logps: [B] summed response log-probs; lengths: [B] response token counts.

    Returns:
        scalar. The same per-sequence normalisation as IRPO's NLL term (`nll_loss`), so SFT on the
        winners is exactly IRPO with the DPO term removed (alpha = 1).
    """
    return nll_loss(policy_logps, lengths).mean()
