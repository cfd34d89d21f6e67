"""The methods that `loop.method` names: what each iteration trains on, and with which loss.

Every other module asks this one; none dispatches on a method's name. Adding a method (IPO,
length-normalised DPO, DPOP, ...) is adding one `Method` to `METHODS` (or calling
`register_method`): the pipeline, `irpo train`, the config validator and the report pick it up.

    irpo      DPO + alpha x the winner's length-normalised NLL (IRPO Eq. 1), on pairs
    dpo       the same pairs and loss with alpha = 0
    star      SFT on every correct sample (STaR; the paper's "SFT on correct samples")
    sft_gold  SFT on the gold solutions of the training questions (no sampling)

This module imports no torch: the config validator reads it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from irpo.errors import IrpoError

if TYPE_CHECKING:
    from irpo.config import TrainConfig
    from irpo.train.objectives import Objective

TrainsOn = Literal["pairs", "correct_samples", "gold"]
"""pairs: preference pairs of sampled solutions (with reference log-probs under M_t);
correct_samples: each correct sampled solution once; gold: the task's gold solutions."""


def preference_loss(cfg: TrainConfig) -> Objective:
    """IRPO Eq. 1 with the configured beta, alpha and NLL normalisation."""
    from irpo.train.objectives import preference_objective

    return preference_objective(
        beta=cfg.beta, alpha=cfg.alpha, nll_normalization=cfg.nll_normalization
    )


def sft_loss(cfg: TrainConfig) -> Objective:
    """The per-sequence mean NLL of each response."""
    from irpo.train.objectives import sft_objective

    return sft_objective()


@dataclass(frozen=True)
class Method:
    """One training method of the loop."""

    name: str
    summary: str
    trains_on: TrainsOn
    objective: Callable[[TrainConfig], Objective]
    """The loss of a micro-batch, built from the (overridden) training settings."""
    train_overrides: Mapping[str, Any] = field(default_factory=dict)
    """`train.*` values this method fixes (dpo: alpha = 0); they are what the run logs."""

    @property
    def samples(self) -> bool:
        """Whether an iteration samples from M_t before training."""
        return self.trains_on != "gold"

    @property
    def preference(self) -> bool:
        """Whether it trains on pairs (and so needs reference log-probs)."""
        return self.trains_on == "pairs"

    def train_config(self, cfg: TrainConfig) -> TrainConfig:
        return cfg.model_copy(update=dict(self.train_overrides)) if self.train_overrides else cfg


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method(
            "irpo",
            "DPO + alpha x the winner's length-normalised NLL (IRPO Eq. 1), reference M_t",
            "pairs",
            preference_loss,
        ),
        Method(
            "dpo",
            "the same pairs and loss with alpha = 0",
            "pairs",
            preference_loss,
            {"alpha": 0.0},
        ),
        Method("star", "SFT on every correct sample (STaR)", "correct_samples", sft_loss),
        Method("sft_gold", "SFT on the gold solutions (no sampling)", "gold", sft_loss),
    )
}

SFT = "sft"
"""`irpo train --method sft`: SFT on a file's examples, whatever method made them."""


def register_method(method: Method) -> None:
    """Add a method (or replace one of the same name)."""
    METHODS[method.name] = method


def get_method(name: str) -> Method:
    """The method called `name`; an error listing the known ones otherwise."""
    try:
        return METHODS[name]
    except KeyError:
        raise IrpoError(f"unknown method {name!r}: expected one of {', '.join(METHODS)}") from None


def training_method(name: str) -> Method:
    """What `irpo train --method NAME` runs: a method's training, or `sft` on a file's examples."""
    return METHODS["sft_gold"] if name == SFT else get_method(name)
