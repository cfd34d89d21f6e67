"""The records the pipeline stages exchange, their JSONL I/O, and the one way files and
folders are written atomically (`atomic_output`).

sample -> verify -> pair -> train -> evaluate: each stage reads and writes these records, one JSON
object per line, so any stage can be run alone and inspected with ordinary tools.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, NoReturn, TypeVar

from irpo.errors import IrpoError

FinishReason = Literal["eos", "stop", "length"]


@dataclass(frozen=True)
class Problem:
    """One question with its gold final answer.

    `choices` holds (label, text) pairs for multiple-choice tasks, in the order shown to the model.
    `solution` is the gold reasoning when the dataset has one (GSM8K, MATH, arith), else None.
    """

    id: str
    question: str
    answer: str
    solution: str | None = None
    choices: tuple[tuple[str, str], ...] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["choices"] = [list(c) for c in self.choices] if self.choices is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Problem:
        choices = d.get("choices")
        return cls(
            id=str(d["id"]),
            question=d["question"],
            answer=d["answer"],
            solution=d.get("solution"),
            choices=tuple((str(a), str(b)) for a, b in choices) if choices is not None else None,
            meta=dict(d.get("meta") or {}),
        )


@dataclass(frozen=True)
class Verdict:
    """The checked final answer of one completion.

    `answer` is the extracted, normalised answer, or None when none could be parsed (which counts
    as wrong). `correct` is True only when the answer matches the gold answer. `rule` names the
    extraction rule that found the answer (`irpo.tasks.answers.RULES`: "final_answer", "boxed",
    ...), None when none did; it is not part of a verdict's equality.
    """

    answer: str | None
    correct: bool
    rule: str | None = field(default=None, compare=False)

    @property
    def parsed(self) -> bool:
        return self.answer is not None


@dataclass
class Sample:
    """One sampled completion for one question.

    `token_ids` are exactly the tokens the model produced (including the EOS token when generation
    ended on it), so training scores these tokens and never a re-tokenisation of `text`.
    `answer` / `correct` are filled by verification (None before it).
    """

    problem_id: str
    index: int
    text: str
    token_ids: list[int]
    finish_reason: FinishReason
    answer: str | None = None
    correct: bool | None = None

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def parsed(self) -> bool:
        return self.answer is not None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["num_tokens"] = self.num_tokens
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Sample:
        return _from_dict(cls, d)


@dataclass
class Pair:
    """A preference pair: a winning and a losing response to the same prompt.

    `prompt` is the exact text given to the model (chat template applied); `prompt_ids` its tokens.
    `chosen_ids` / `rejected_ids` are response tokens only. `chosen_index` is the winner's sample
    index, or -1 when the winner is the gold solution. Reference log-probs (summed over response
    tokens, under M_t) are filled once before training and stored with the pair.
    """

    problem_id: str
    prompt: str
    prompt_ids: list[int]
    chosen: str
    chosen_ids: list[int]
    rejected: str
    rejected_ids: list[int]
    chosen_index: int
    rejected_index: int
    ref_chosen_logp: float | None = None
    ref_rejected_logp: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Pair:
        return _from_dict(cls, d)


T = TypeVar("T", Sample, Pair)


def _from_dict(cls: type[T], d: dict[str, Any]) -> T:
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in d.items() if k in names})


# --------------------------------------------------------------------------- JSONL I/O


def read_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    """Yield the objects of a JSONL file; a broken line raises IrpoError naming file and line.

    A truncated last line (a write cut short by a crash) is skipped, so that appending writers can
    resume after being killed.
    """
    path = Path(path)
    if not path.exists():
        raise IrpoError(f"{path}: file not found")
    with path.open(encoding="utf-8") as f:
        lines = f.readlines()
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            if lineno == len(lines) and not line.endswith("\n"):
                return  # an interrupted append: the writer will redo this record
            raise IrpoError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
        if not isinstance(obj, dict):
            raise IrpoError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
        yield obj


# --------------------------------------------------------------------------- atomic writes


@contextmanager
def atomic_output(dest: str | Path, *, folder: bool = False) -> Iterator[Path]:
    """A fresh temporary file (or empty folder) beside `dest`, put in `dest`'s place when the
    block ends without an error and removed when it raises.

        with atomic_output(path) as tmp:
            tmp.write_text(...)

    Readers see the old `dest` or the complete new one, never a part: a file replaces the old
    one in one rename. A folder replaces an old folder in two steps (remove, then rename), so a
    crash between them leaves no `dest` at all, which every caller treats as "not done yet".
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    prefix, suffix = f".{dest.name}.", ".tmp"
    if folder:
        tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=prefix, suffix=suffix))
        tmp.chmod(0o755)  # mkdtemp makes it private; the result is an ordinary folder
    else:
        fd, name = tempfile.mkstemp(dir=dest.parent, prefix=prefix, suffix=suffix)
        os.close(fd)
        tmp = Path(name)
    try:
        try:
            yield tmp
            replace_path(tmp, dest)
        except OSError as e:
            _reraise_naming(e, dest)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def replace_path(src: Path, dest: Path) -> None:
    """Move a finished file or folder onto `dest` (see `atomic_output`)."""
    if src.is_dir() and dest.exists():
        shutil.rmtree(dest)
    os.replace(src, dest)


def write_text(path: str | Path, text: str) -> None:
    """Write a text file atomically."""
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    """Write rows atomically: readers see the old file or the complete new one, never a part."""
    with atomic_output(path) as tmp, tmp.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def append_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    """Append rows and flush them to disk (used for incremental, resumable writing)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        _drop_partial_last_line(path)
        with path.open("a", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        _reraise_naming(e, path)  # a partly written last line is dropped on resume


def _reraise_naming(error: OSError, path: Path) -> NoReturn:
    """Raise the error again, naming the file it was about (a failed write() does not)."""
    if error.filename is not None:
        raise error
    raise type(error)(error.errno, error.strerror, str(path)) from error


def _drop_partial_last_line(path: Path) -> None:
    if not path.exists() or path.stat().st_size == 0:
        return
    with path.open("rb+") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) == b"\n":
            return
        f.seek(0)
        data = f.read()
        f.truncate(data.rfind(b"\n") + 1)


def write_json(path: str | Path, obj: Any) -> None:
    """Write one JSON document atomically."""
    write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise IrpoError(f"{path}: file not found") from None
    except json.JSONDecodeError as e:
        raise IrpoError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None


def read_samples(path: str | Path) -> list[Sample]:
    return [Sample.from_dict(d) for d in read_jsonl(path)]


def read_pairs(path: str | Path) -> list[Pair]:
    return [Pair.from_dict(d) for d in read_jsonl(path)]
