"""Splitting the questions of a sampling run across machines, and merging the pieces back.

A question belongs to shard `hash(id) mod n` (blake2b, stable across processes and machines), so
the split depends only on the ids, not on their order or on which other questions are present.
Each sample's randomness depends only on its own name (`irpo.sampling.seeding`), so the merged
shards hold exactly the records of an unsharded run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from irpo.errors import IrpoError
from irpo.records import Problem, Sample, read_samples, write_jsonl


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count` (0 <= index < count)."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise IrpoError(
                f"shard {self.index}/{self.count}: expected I/N with 0 <= I < N (e.g. 0/4 ... 3/4)"
            )

    @classmethod
    def parse(cls, text: str) -> Shard:
        """`"1/4"` -> Shard(1, 4)."""
        index, sep, count = text.partition("/")
        try:
            if not sep:
                raise ValueError
            return cls(int(index), int(count))
        except ValueError:
            raise IrpoError(
                f"--shard {text!r}: expected I/N, e.g. 0/4 for the first of 4"
            ) from None

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def holds(self, problem_id: str) -> bool:
        return shard_of(problem_id, self.count) == self.index


def shard_of(problem_id: str, count: int) -> int:
    digest = hashlib.blake2b(problem_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") % count


def select_shard(problems: Sequence[Problem], shard: Shard | None) -> list[Problem]:
    """The problems of `shard`, in their original order (all of them when shard is None)."""
    if shard is None:
        return list(problems)
    return [p for p in problems if shard.holds(p.id)]


def merge_shards(paths: Sequence[str | Path], problems: Sequence[Problem]) -> list[Sample]:
    """The samples of all shard files, ordered as an unsharded run writes them (by problem, in
    the order of `problems`, then by sample index). Duplicates and strays are errors."""
    order = {p.id: i for i, p in enumerate(problems)}
    seen: dict[tuple[str, int], Path] = {}
    merged: list[Sample] = []
    for path in map(Path, paths):
        for s in read_samples(path):
            if s.problem_id not in order:
                raise IrpoError(f"{path}: sample of unknown problem {s.problem_id!r}")
            key = (s.problem_id, s.index)
            if key in seen:
                raise IrpoError(f"{path}: sample {key} also in {seen[key]}")
            seen[key] = path
            merged.append(s)
    merged.sort(key=lambda s: (order[s.problem_id], s.index))
    return merged


def write_samples(path: str | Path, samples: Sequence[Sample]) -> None:
    write_jsonl(path, (s.to_dict() for s in samples))


def shard_path(target: str | Path, shard: Shard) -> Path:
    """Where shard I of N of `target` (`x.jsonl`) is written: `x.shard-I-of-N.jsonl`."""
    target = Path(target)
    return target.with_name(f"{target.stem}.shard-{shard.index}-of-{shard.count}.jsonl")


def merge_into(target: str | Path, count: int, problems: Sequence[Problem]) -> list[Sample]:
    """Merge the `count` shard files of `target` into it (every shard must be there), then
    remove the shard files and the settings and statistics written beside them."""
    target = Path(target)
    paths = [shard_path(target, Shard(i, count)) for i in range(count)]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise IrpoError(f"{target}: shard files missing: {', '.join(missing)}")
    samples = merge_shards(paths, problems)
    write_samples(target, samples)
    for p in target.parent.glob(f"{target.stem}.shard-*-of-*.*"):
        p.unlink()
    return samples
