"""Which examples each optimizer step sees, on which process: a pure function of the step.

The data is an endless stream of seeded permutations (epoch e uses permutation(seed, e)); step s
takes the next `batch_size` positions of that stream. The data position is therefore the step
number itself, so a resumed run sees exactly the batches an uninterrupted one would, and a
fractional number of epochs needs no special case.

Inside a global batch, examples are sorted by length and cut into micro-batches (less padding);
process r takes micro-batches r, r + P, r + 2P, ... With the per-sequence losses of this package
each micro-batch contributes the mean over its examples, so any number of processes computes
the same global-batch mean (up to floating-point order).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from irpo.errors import IrpoError


@dataclass(frozen=True)
class BatchPlan:
    num_examples: int
    batch_size: int
    """Examples per optimizer step, over all processes and accumulation steps."""
    micro_batch_size: int
    num_processes: int
    total_steps: int
    seed: int

    @property
    def accumulation_steps(self) -> int:
        return self.batch_size // (self.micro_batch_size * self.num_processes)

    def epoch_at(self, step: int) -> float:
        """Passes over the data completed after `step` optimizer steps."""
        return step * self.batch_size / self.num_examples

    def global_batch(self, step: int) -> list[int]:
        """Indices of the examples of optimizer step `step` (0-based), over all processes."""
        start = step * self.batch_size
        out = []
        for pos in range(start, start + self.batch_size):
            epoch, offset = divmod(pos, self.num_examples)
            out.append(int(_permutation(self.num_examples, self.seed, epoch)[offset]))
        return out

    def local_micro_batches(
        self, step: int, process_index: int, length_of: Callable[[int], int]
    ) -> list[list[int]]:
        """The micro-batches of `step` that process `process_index` runs, in order."""
        ordered = sorted(self.global_batch(step), key=lambda i: (length_of(i), i))
        m = self.micro_batch_size
        chunks = [ordered[k : k + m] for k in range(0, len(ordered), m)]
        return chunks[process_index :: self.num_processes]


def make_plan(
    num_examples: int,
    *,
    batch_size: int,
    micro_batch_size: int,
    num_processes: int,
    epochs: float,
    max_steps: int | None,
    seed: int,
) -> BatchPlan:
    """Check the batch arithmetic and count the steps (max_steps, else ceil(epochs * N / B))."""
    if num_examples < 1:
        raise IrpoError("no training examples")
    per_step = micro_batch_size * num_processes
    if batch_size % per_step:
        raise IrpoError(
            f"train.batch_size ({batch_size}) must be a multiple of train.micro_batch_size "
            f"({micro_batch_size}) x processes ({num_processes}) = {per_step}"
        )
    total = max_steps if max_steps is not None else math.ceil(epochs * num_examples / batch_size)
    return BatchPlan(num_examples, batch_size, micro_batch_size, num_processes, max(total, 1), seed)


@lru_cache(maxsize=4)
def _permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(n)
