"""Per-sequence random streams: every sample's randomness derives from its own name.

Sample j of question q in iteration t of a run with seed s draws from the stream
`sequence_seed(s, t, q, j)`. The stream does not depend on which other sequences are decoded
beside it, on the batch size, on sharding or on resuming, so a question's samples are the same
however the work is split (up to floating-point rounding of the logits themselves).
"""

from __future__ import annotations

import hashlib

SEED_BITS = 63


def sequence_seed(*parts: object) -> int:
    """A 63-bit seed from the parts' reprs (e.g. (seed, iteration, problem_id, index)).

    blake2b rather than Python's `hash`, which is salted per process for strings.
    """
    key = "\x1f".join(repr(p) for p in parts).encode("utf-8")
    digest = hashlib.blake2b(key, digest_size=8).digest()
    return int.from_bytes(digest, "little") >> (64 - SEED_BITS)


def sample_seeds(
    seed: int, stream: str, iteration: int, problem_id: str, n: int
) -> tuple[int, ...]:
    """The seeds of samples 0..n-1 of one question; `stream` separates uses ("sample", "eval")."""
    return tuple(sequence_seed(seed, stream, iteration, problem_id, j) for j in range(n))
