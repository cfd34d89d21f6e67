"""Hand-derived values for every term of IRPO Eq. 1.

The batch used throughout (two pairs, beta = 0.5):

    policy_chosen_logps   pc = [-10, -6]     ref_chosen_logps   rc = [-11, -6]
    policy_rejected_logps pr = [-12, -5]     ref_rejected_logps rr = [-11, -5]
    chosen_lengths        |w| = [5, 2]        rejected_lengths       = [4, 1]

Pair 0: chosen log-ratio pc - rc = +1, rejected log-ratio pr - rr = -1,
        z = 0.5 * (1 - (-1)) = 1,  dpo = -log sigmoid(1) = log(1 + e^-1) = 0.31326169
Pair 1: both log-ratios 0, z = 0,   dpo = log 2 = 0.69314718
NLL per sequence: [-(-10)/5, -(-6)/2] = [2, 3], mean 2.5
NLL batch token (TRL): (10 + 6) / (5 + 2) = 16/7 = 2.28571429
Rewards beta * log-ratio: chosen [0.5, 0], rejected [-0.5, 0];
reward accuracy: pair 0 (0.5 > -0.5) yes, pair 1 (0 > 0) no -> 0.5
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from irpo.losses import dpo_loss, irpo_loss, nll_loss, sequence_logps, sft_loss

PC = [-10.0, -6.0]
PR = [-12.0, -5.0]
RC = [-11.0, -6.0]
RR = [-11.0, -5.0]
CHOSEN_LENGTHS = [5, 2]
REJECTED_LENGTHS = [4, 1]
BETA = 0.5
DPO_0 = math.log1p(math.exp(-1.0))  # 0.31326169
DPO_1 = math.log(2.0)
DPO_MEAN = (DPO_0 + DPO_1) / 2  # 0.50320444


def t(values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


def batch() -> tuple[torch.Tensor, ...]:
    return t(PC), t(PR), t(RC), t(RR), torch.tensor(CHOSEN_LENGTHS)


def scalar(x: float) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float32)


# --------------------------------------------------------------------------- sequence_logps


def test_sequence_logps_hand_values() -> None:
    # V = 2, logits [0, ln 3] at every position: p(token 1) = 3/4, p(token 0) = 1/4.
    logits = torch.tensor([0.0, math.log(3.0)]).expand(2, 3, 2).clone()
    labels = torch.tensor([[1, 0, 1], [0, 0, -100]])
    mask = torch.tensor([[True, True, False], [True, True, False]])
    expected = t([math.log(0.75) + math.log(0.25), 2 * math.log(0.25)])
    assert_close(sequence_logps(logits, labels, mask), expected)


def test_sequence_logps_uniform_logits() -> None:
    # Equal logits over V = 4: every token costs log 4; row sums count masked tokens only.
    logits = torch.zeros(2, 5, 4)
    labels = torch.tensor([[3, 2, 1, 0, 3], [0, 0, 0, 0, 0]])
    mask = torch.tensor([[0, 1, 1, 1, 0], [1, 1, 1, 1, 1]])
    assert_close(sequence_logps(logits, labels, mask), t([-3 * math.log(4), -5 * math.log(4)]))


def test_sequence_logps_matches_manual_loop() -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 7, 11, generator=gen)
    labels = torch.randint(0, 11, (3, 7), generator=gen)
    mask = torch.rand(3, 7, generator=gen) > 0.4
    expected = torch.zeros(3)
    for b in range(3):
        for pos in range(7):
            if mask[b, pos]:
                expected[b] += torch.log_softmax(logits[b, pos], dim=-1)[labels[b, pos]]
    assert_close(sequence_logps(logits, labels, mask), expected)


def test_sequence_logps_half_precision_logits_give_float32() -> None:
    logits = torch.zeros(1, 2, 4, dtype=torch.bfloat16)
    out = sequence_logps(logits, torch.tensor([[1, 2]]), torch.tensor([[True, True]]))
    assert out.dtype == torch.float32
    assert_close(out, t([-2 * math.log(4)]))


# --------------------------------------------------------------------------- terms


def test_dpo_loss_hand_values() -> None:
    pc, pr, rc, rr, _ = batch()
    assert_close(dpo_loss(pc, pr, rc, rr, BETA), t([DPO_0, DPO_1]))


def test_nll_loss_is_per_sequence_mean() -> None:
    assert_close(nll_loss(t(PC), torch.tensor(CHOSEN_LENGTHS)), t([2.0, 3.0]))


def test_sft_loss_matches_nll_normalisation() -> None:
    assert_close(sft_loss(t(PC), torch.tensor(CHOSEN_LENGTHS)), scalar(2.5))


# --------------------------------------------------------------------------- irpo_loss


def test_irpo_loss_sequence_normalisation_and_metrics() -> None:
    loss, m = irpo_loss(
        *batch(), beta=BETA, alpha=1.0, rejected_lengths=torch.tensor(REJECTED_LENGTHS)
    )
    assert_close(loss, scalar(DPO_MEAN + 2.5))  # 3.00320444
    expected = {
        "loss": DPO_MEAN + 2.5,
        "dpo": DPO_MEAN,
        "nll": 2.5,
        "chosen_rewards": 0.25,
        "rejected_rewards": -0.25,
        "margin": 0.5,
        "reward_accuracy": 0.5,
        "policy_chosen_logps": -8.0,
        "policy_rejected_logps": -8.5,
        "policy_chosen_logps_per_token": (-2.0 - 3.0) / 2,
        "policy_rejected_logps_per_token": (-3.0 - 5.0) / 2,
    }
    assert set(m) == set(expected)
    for key, value in expected.items():
        assert_close(m[key], scalar(value), msg=key)
        assert not m[key].requires_grad


def test_irpo_loss_alpha_weights_nll() -> None:
    loss, _ = irpo_loss(*batch(), beta=BETA, alpha=0.25)
    assert_close(loss, scalar(DPO_MEAN + 0.25 * 2.5))


def test_irpo_loss_batch_token_normalisation() -> None:
    loss, m = irpo_loss(*batch(), beta=BETA, alpha=1.0, nll_normalization="batch_token")
    assert_close(m["nll"], scalar(16 / 7))
    assert_close(loss, scalar(DPO_MEAN + 16 / 7))  # 2.78892


def test_batch_token_differs_from_sequence_by_hand_derived_amount() -> None:
    # The long winner (5 tokens, 2 nats/token) weighs 5/7 under batch_token but 1/2 per sequence:
    # 2.5 - 16/7 = 3/14.
    seq, _ = irpo_loss(*batch(), beta=BETA, alpha=1.0, nll_normalization="sequence")
    tok, _ = irpo_loss(*batch(), beta=BETA, alpha=1.0, nll_normalization="batch_token")
    assert_close(seq - tok, scalar(3 / 14))


def test_alpha_zero_is_exactly_dpo() -> None:
    gen = torch.Generator().manual_seed(1)
    pc, pr, rc, rr = (-10 * torch.rand(6, generator=gen) for _ in range(4))
    lengths = torch.randint(1, 20, (6,), generator=gen)
    loss, _ = irpo_loss(pc, pr, rc, rr, lengths, beta=0.1, alpha=0.0)
    assert torch.equal(loss, dpo_loss(pc, pr, rc, rr, 0.1).mean())


def test_irpo_loss_gradient_by_hand() -> None:
    # d loss / d pc_b = -(beta / B) * (1 - sigmoid(z_b)) - alpha / (B * |w_b|)
    # d loss / d pr_b = +(beta / B) * (1 - sigmoid(z_b))
    pc, pr, rc, rr, lengths = batch()
    pc.requires_grad_(True)
    pr.requires_grad_(True)
    loss, _ = irpo_loss(pc, pr, rc, rr, lengths, beta=BETA, alpha=1.0)
    loss.backward()
    s0 = 1 - 1 / (1 + math.exp(-1.0))  # 1 - sigmoid(1) = 0.26894142
    s1 = 0.5  # 1 - sigmoid(0)
    assert pc.grad is not None and pr.grad is not None
    assert_close(pc.grad, t([-0.25 * s0 - 1 / 10, -0.25 * s1 - 1 / 4]))
    assert_close(pr.grad, t([0.25 * s0, 0.25 * s1]))


def test_gradients_through_sequence_logps_are_finite() -> None:
    gen = torch.Generator().manual_seed(2)
    logits = (30 * torch.randn(4, 6, 9, generator=gen)).requires_grad_(True)
    labels = torch.randint(0, 9, (4, 6), generator=gen)
    mask = torch.ones(4, 6, dtype=torch.bool)
    logps = sequence_logps(logits, labels, mask)
    loss, _ = irpo_loss(
        logps[:2], logps[2:], logps[:2].detach() + 50, logps[2:].detach() - 50,
        torch.tensor([6, 6]), beta=0.1, alpha=1.0,
    )  # fmt: skip
    loss.backward()
    assert logits.grad is not None
    assert torch.isfinite(logits.grad).all()
    assert logits.grad.abs().sum() > 0


def test_unknown_normalisation_is_rejected() -> None:
    with pytest.raises(ValueError, match="nll_normalization"):
        irpo_loss(*batch(), beta=BETA, alpha=1.0, nll_normalization="token")  # type: ignore[arg-type]
