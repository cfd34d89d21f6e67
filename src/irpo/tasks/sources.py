"""Read a task's rows from a local file, a folder, or a Hugging Face dataset, with row numbers.

`source` is one of:
- a file: `.jsonl`, `.json` (a list of objects, or an object holding the list under the split
  name or under "data" / "rows" / "examples"), or `.parquet`; the split is then not used to
  choose the file;
- a folder: the split picks the file(s) whose name contains the split as a word
  (`test.jsonl`, `MATH_test.jsonl`, `ARC-Challenge-Dev.jsonl`; "validation", "dev" and "val" are
  one split), preferring `.jsonl`, then `.parquet`, then `.json`; several matching files of that
  kind are shards, read in name order;
- a Hugging Face dataset id, optionally with a configuration after a colon
  (`openai/gsm8k:main`), loaded with `datasets` (needs the network or a local cache).

Every row carries `where` ("train.jsonl:12", "data.json: item 3", "x.parquet: row 7") so that
errors name the file and the line or row. A row a task cannot use raises `BadRow`; `load_rows`
turns it into an IrpoError, or skips and counts it when asked to.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from irpo.errors import IrpoError
from irpo.records import Problem
from irpo.tasks.base import LoadStats, Task

log = logging.getLogger(__name__)

SUFFIXES = (".jsonl", ".parquet", ".json")
"""Supported local formats, in the order of preference when a folder holds several."""
_SPLIT_WORDS = {
    "validation": ("validation", "dev", "val", "valid"),
    "dev": ("validation", "dev", "val", "valid"),
    "val": ("validation", "dev", "val", "valid"),
}
_JSON_LIST_KEYS = ("data", "rows", "examples", "instances")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?(:[\w.-]+)?$")
_MAX_REASONS = 20


class BadRow(ValueError):
    """A row a task cannot turn into a Problem; the message says why ("no 'answer' field")."""


@dataclass(frozen=True)
class Row:
    """One record of a source: where it is (for messages), its 0-based position, its fields."""

    where: str
    index: int
    data: Any

    def field(self, name: str) -> Any:
        """The value of a required field: a BadRow when it is missing, null or blank."""
        if not isinstance(self.data, dict):
            raise BadRow(f"expected a JSON object, got {type(self.data).__name__}")
        if name not in self.data:
            raise BadRow(f"no {name!r} field")
        value = self.data[name]
        if value is None:
            raise BadRow(f"field {name!r} is null")
        if isinstance(value, str) and not value.strip():
            raise BadRow(f"empty {name!r} field")
        return value

    def text(self, name: str) -> str:
        """A required field as text (numbers are accepted and written as text)."""
        value = self.field(name)
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise BadRow(f"field {name!r} should be text, got {type(value).__name__}")
        return str(value)


# --------------------------------------------------------------------------- choosing files


def split_words(split: str) -> tuple[str, ...]:
    """The file-name words that select `split` in a folder."""
    return _SPLIT_WORDS.get(split.lower(), (split.lower(),))


def files_for_split(folder: Path, split: str) -> list[Path]:
    """The file(s) of `split` in `folder` (rules in the module docstring); IrpoError if none."""
    candidates = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in SUFFIXES)
    words = set(split_words(split))
    matching = [p for p in candidates if words & set(re.split(r"[^a-z0-9]+", p.stem.lower()))]
    for suffix in SUFFIXES:
        chosen = [p for p in matching if p.suffix == suffix]
        if chosen:
            return chosen
    names = (
        ", ".join(str(p.relative_to(folder)) for p in candidates) or "no JSONL/JSON/Parquet files"
    )
    raise IrpoError(f"{folder}: no file for split {split!r} (found: {names})")


def _looks_like_path(source: str) -> bool:
    return (
        Path(source).suffix in (*SUFFIXES, ".csv", ".txt", ".tsv")
        or source.startswith((".", "/", "~"))
        or "\\" in source
        or not _HUB_ID.match(source)
    )


# --------------------------------------------------------------------------- reading


def iter_rows(source: str, split: str) -> Iterator[Row]:
    """The rows of `split` in `source` (a file, a folder or a Hub id), each with its location.

    `Row.index` counts rows across all files of the split (shards continue each other).
    """
    path = Path(source).expanduser()
    if path.is_dir():
        offset = 0  # shards continue one another's row positions
        for file in files_for_split(path, split):
            count = 0
            for row in _file_rows(file):
                yield replace(row, index=offset + row.index)
                count = row.index + 1
            offset += count
    elif path.is_file():
        yield from _file_rows(path)
    elif _looks_like_path(source):
        raise IrpoError(f"{source}: file not found")
    else:
        yield from _hub_rows(source, split)


def _file_rows(path: Path) -> Iterator[Row]:
    if path.suffix == ".jsonl":
        yield from _jsonl_rows(path)
    elif path.suffix == ".json":
        yield from _json_rows(path)
    elif path.suffix == ".parquet":
        yield from _parquet_rows(path)
    else:
        raise IrpoError(
            f"{path}: unsupported format {path.suffix or '(no suffix)'!r}; "
            "use JSONL, JSON or Parquet"
        )


def _jsonl_rows(path: Path) -> Iterator[Row]:
    """JSONL lines; a line that is not JSON becomes a row whose data is a BadRow to report."""
    with path.open(encoding="utf-8") as f:
        index = 0
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                data: Any = json.loads(line)
            except json.JSONDecodeError as e:
                data = BadRow(f"not valid JSON ({e.msg})")
            yield Row(f"{path}:{lineno}", index, data)
            index += 1


def _json_rows(path: Path) -> Iterator[Row]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise IrpoError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
    except UnicodeDecodeError:
        raise IrpoError(f"{path}: not a UTF-8 text file") from None
    items = doc
    if isinstance(doc, dict):
        key = next((k for k in _JSON_LIST_KEYS if isinstance(doc.get(k), list)), None)
        if key is None:
            raise IrpoError(
                f"{path}: expected a list of objects, or an object with one of "
                f"{', '.join(_JSON_LIST_KEYS)} holding that list"
            )
        items = doc[key]
    if not isinstance(items, list):
        raise IrpoError(f"{path}: expected a list of objects, got {type(items).__name__}")
    for i, item in enumerate(items):
        yield Row(f"{path}: item {i + 1}", i, item)


def _parquet_rows(path: Path) -> Iterator[Row]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as e:  # pyarrow raises several types for a broken file
        raise IrpoError(f"{path}: not a readable Parquet file ({e})") from None
    for i, item in enumerate(table.to_pylist()):
        yield Row(f"{path}: row {i + 1}", i, item)


def _hub_rows(source: str, split: str) -> Iterator[Row]:
    name, _, config = source.partition(":")
    split = "validation" if split in ("dev", "val", "valid") else split  # the Hub's name for it
    try:
        import datasets

        dataset = datasets.load_dataset(name, config or None, split=split)
    except Exception as e:  # offline, unknown id, unknown split: all mean "cannot use this source"
        raise IrpoError(
            f"{source}: not a local file or folder, and loading it as a Hugging Face dataset "
            f"failed ({type(e).__name__}: {e}). Without network access, pass a local "
            "JSONL/JSON/Parquet file or folder instead."
        ) from None
    for i, item in enumerate(dataset):
        yield Row(f"{source}[{split}]: row {i + 1}", i, item)


# --------------------------------------------------------------------------- problems


def load_rows(
    source: str,
    split: str,
    parse: Callable[[Row], Problem],
    *,
    task: str,
    limit: int | None = None,
    skip_bad_rows: bool = False,
) -> tuple[list[Problem], LoadStats]:
    """Turn the rows of a source into Problems with `parse` (which raises BadRow on a bad row).

    A bad row is an IrpoError naming its file and line, unless `skip_bad_rows`: then it is
    skipped, counted and logged. Reading stops after `limit` problems. An empty result is an error.
    """
    stats = LoadStats(source=source)
    problems: list[Problem] = []
    seen: dict[str, str] = {}
    for row in iter_rows(source, split):
        if limit is not None and len(problems) >= limit:
            break
        stats.rows += 1
        try:
            if isinstance(row.data, BadRow):
                raise row.data
            problem = parse(row)
            if problem.id in seen:
                raise BadRow(f"id {problem.id!r} repeats the row at {seen[problem.id]}")
        except BadRow as e:
            message = f"{row.where}: {e}"
            if not skip_bad_rows:
                raise IrpoError(
                    f"task {task}: {message} (skip such rows with skip_bad_rows)"
                ) from None
            stats.skipped += 1
            if len(stats.skipped_reasons) < _MAX_REASONS:
                stats.skipped_reasons.append(message)
            continue
        seen[problem.id] = row.where
        problems.append(problem)
    stats.loaded = len(problems)
    if stats.skipped:
        log.warning(
            "task %s: skipped %d bad row(s) of %d in %s (first: %s)",
            task,
            stats.skipped,
            stats.rows,
            source,
            stats.skipped_reasons[0],
        )
    if not problems:
        raise IrpoError(f"task {task}: no usable rows for split {split!r} in {source}")
    return problems, stats


class RowTask(Task):
    """A task whose problems are rows of a data source; subclasses say how to read one row."""

    source_hint = "a JSONL, JSON or Parquet file or folder"
    """What `source` may be, for the error when none is given."""

    def parse_row(self, row: Row, split: str) -> Problem:
        """One row -> Problem; raise BadRow when the row cannot be used."""
        raise NotImplementedError

    def load_with_stats(
        self,
        source: str | None,
        split: str,
        *,
        limit: int | None = None,
        skip_bad_rows: bool = False,
    ) -> tuple[list[Problem], LoadStats]:
        if source is None:
            raise IrpoError(f"task {self.name} needs a source: {self.source_hint}")
        return load_rows(
            source,
            split,
            lambda row: self.parse_row(row, split),
            task=self.name,
            limit=limit,
            skip_bad_rows=skip_bad_rows,
        )
