"""The one place that knows the run directory layout, its manifest and its metrics log.

    RUN/
      config.yaml            the resolved configuration of the run
      manifest.json          every finished stage: {"iter_0/sample": {"status": "done",
                             "outputs": {"iter_0/samples.jsonl": {"size": ..., "sha256": ...}}}}
      run.lock               held (flock) by the one process writing the run; who holds it
      run.token              written by the driver at start; every worker reads it back
                             (the shared file system check, irpo.launch.check_run_dir)
      metrics.jsonl          every metric row (stage summaries and training steps)
      seed/                  the seed model M_0 when the run builds it (demo)
      evals/model_<t>.json   evaluation of M_t (M_0 is the seed)
      iter_<t>/              iteration t: M_t -> M_{t+1}
        samples.jsonl        N verified samples per training question
        sample_stats.json
        pairs.jsonl          preference pairs (token ids)
        preference.jsonl     the pairs as prompt/chosen/rejected rows (for other trainers)
        pair_stats.json
        reference.jsonl      log M_ref(chosen|x), log M_ref(rejected|x) of every pair
        train/               resumable training state and train_log.jsonl
        train/model/         the checkpoint M_{t+1}
      report/                REPORT.md, plots, table.csv, table.json

A stage is marked done only after all its outputs are written and checked, with the size and
SHA-256 of each output file, so a killed run restarts at the first stage that is not done;
stages that write incrementally (sampling, training) resume from their partial outputs. A resume
checks the files of every finished stage it skips: one that was truncated, edited or removed
since is redone (with a warning naming the file), and when the redone outputs differ from the
recorded ones, every later stage is redone too.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import socket
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from irpo.config import RunConfig, config_from_dict, dump_config
from irpo.errors import IrpoError
from irpo.records import append_jsonl, read_json, read_jsonl, write_json, write_text

log = logging.getLogger(__name__)

# Keys that may change between invocations of the same run without invalidating finished work.
# Raising loop.iterations extends a finished run; trackers only change where metrics are sent;
# launch.* only changes how stages are started, not what they compute.
EXTENSIBLE_KEYS = frozenset({"loop.iterations", "loop.min_gain", "trackers"})
EXTENSIBLE_PREFIXES = ("launch.",)


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            flat.update(_flatten(v, key + "."))
        else:
            flat[key] = v
    return flat


def config_changes(old: RunConfig, new: RunConfig) -> dict[str, tuple[Any, Any]]:
    a = _flatten(old.model_dump(mode="json"))
    b = _flatten(new.model_dump(mode="json"))
    return {k: (a.get(k), b.get(k)) for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)}


@dataclass(frozen=True)
class IterationDir:
    root: Path
    index: int

    @property
    def samples(self) -> Path:
        return self.root / "samples.jsonl"

    @property
    def sample_stats(self) -> Path:
        return self.root / "sample_stats.json"

    @property
    def pairs(self) -> Path:
        return self.root / "pairs.jsonl"

    @property
    def preference(self) -> Path:
        return self.root / "preference.jsonl"

    @property
    def pair_stats(self) -> Path:
        return self.root / "pair_stats.json"

    @property
    def reference(self) -> Path:
        """Reference log-probs of the pairs, one row per pair: {"index", "chosen", "rejected"}."""
        return self.root / "reference.jsonl"

    @property
    def sft_examples(self) -> Path:
        return self.root / "sft_examples.jsonl"

    @property
    def train(self) -> Path:
        return self.root / "train"

    @property
    def model(self) -> Path:
        """The checkpoint M_{t+1}, where the trainer saves it."""
        return self.train / "model"


class RunDir:
    """Open or create a run directory for a configuration."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._checked: set[str] = set()
        self._lock_fd: int | None = None

    # ------------------------------------------------------------------ layout
    @property
    def config_path(self) -> Path:
        return self.root / "config.yaml"

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    @property
    def lock_path(self) -> Path:
        return self.root / "run.lock"

    @property
    def lock_fd(self) -> int | None:
        """The open lock file while this object holds the lock (launched processes inherit it,
        so the run stays locked while any of them lives)."""
        return self._lock_fd

    @property
    def metrics_path(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def seed_dir(self) -> Path:
        return self.root / "seed"

    @property
    def report_dir(self) -> Path:
        return self.root / "report"

    def eval_path(self, model_index: int) -> Path:
        return self.root / "evals" / f"model_{model_index}.json"

    def iteration(self, t: int) -> IterationDir:
        return IterationDir(self.root / f"iter_{t}", t)

    # ------------------------------------------------------------------ config
    def exists(self) -> bool:
        return self.config_path.exists()

    def load_config(self) -> RunConfig:
        if not self.exists():
            raise IrpoError(f"{self.root}: not a run directory (no config.yaml)")
        data = yaml.safe_load(self.config_path.read_text(encoding="utf-8")) or {}
        return config_from_dict(data, str(self.config_path))

    def init(self, config: RunConfig, *, allow_config_change: bool = False) -> None:
        """Create the run, or check that an existing run was made with the same config."""
        if self.exists():
            old = self.load_config()
            changes = config_changes(old, config)
            blocking = {
                k: v
                for k, v in changes.items()
                if k not in EXTENSIBLE_KEYS and not k.startswith(EXTENSIBLE_PREFIXES)
            }
            if blocking and not allow_config_change:
                lines = [f"  {k}: {a!r} -> {b!r}" for k, (a, b) in blocking.items()]
                raise IrpoError(
                    f"{self.root} was started with a different configuration:\n"
                    + "\n".join(lines)
                    + "\nUse a new run directory, or pass --allow-config-change to continue "
                    "this run with the new values (finished stages are kept as they are)."
                )
            if changes:
                log.warning("configuration changed: %s", ", ".join(changes))
        self.root.mkdir(parents=True, exist_ok=True)
        text = dump_config(config)
        if not self.config_path.exists() or self.config_path.read_text(encoding="utf-8") != text:
            write_text(self.config_path, text)

    # ------------------------------------------------------------------ one writer
    @contextmanager
    def writer_lock(self) -> Iterator[None]:
        """Hold the run's exclusive lock for the block, or stop at once naming its holder.

        An OS file lock (flock): the kernel releases it when the holder exits or is killed,
        so a dead run never leaves a stale lock behind.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe_holder(os.pread(fd, 4096, 0))
            os.close(fd)
            raise IrpoError(
                f"{self.root} is being written by another irpo run ({holder}); wait for it to "
                "finish or stop it, then run the same command again"
            ) from None
        try:
            info = {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            }
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
            self._lock_fd = fd
            yield
        finally:
            self._lock_fd = None
            os.close(fd)  # releases the lock; the file stays (removing it would race)

    # ------------------------------------------------------------------ manifest
    def manifest(self) -> dict[str, Any]:
        if not self.manifest_path.exists():
            return {"stages": {}}
        data = read_json(self.manifest_path)
        if not isinstance(data, dict) or not isinstance(data.get("stages"), dict):
            raise IrpoError(f"{self.manifest_path}: not a run manifest")
        return data

    def is_done(self, stage: str) -> bool:
        """Whether `stage` finished and its recorded outputs are still what it wrote.

        Outputs are checked once per RunDir object. A stage whose outputs changed is marked
        "redo" and its output files are removed, with a warning naming the first bad one, so
        that it runs again; see `mark_done` for what happens to the stages after it.
        """
        info = self.manifest()["stages"].get(stage, {})
        if info.get("status") != "done":
            return False
        if stage in self._checked:
            return True
        outputs: dict[str, Any] = info.get("outputs", {})
        problem = next(
            (p for p in (_mismatch(self.root, k, v) for k, v in outputs.items()) if p), None
        )
        if problem is None:
            self._checked.add(stage)
            return True
        log.warning("stage %s: %s; redoing the stage", stage, problem)
        self._remove_outputs([*outputs, *info.get("derived", [])])
        data = self.manifest()
        data["stages"][stage] = {"status": "redo", "outputs": outputs}  # keeps its place
        write_json(self.manifest_path, data)
        return False

    def stage_info(self, stage: str) -> dict[str, Any]:
        return dict(self.manifest()["stages"].get(stage, {}))

    def mark_done(
        self,
        stage: str,
        outputs: Iterable[Path] = (),
        *,
        derived: Iterable[Path] = (),
        **info: Any,
    ) -> None:
        """Record `stage` as finished, with the size and SHA-256 of each of its `outputs`
        (files, or folders: every file inside). `derived` files or folders (summaries with timings,
        working state) are not compared, only removed with the outputs when it is redone.

        When the stage was redone because its outputs had changed and the new outputs differ
        from the recorded ones, every stage recorded after it is forgotten (and its outputs
        removed): it was computed from the old outputs.
        """
        record = {rel: meta for path in outputs for rel, meta in _fingerprints(self.root, path)}
        data = self.manifest()
        previous = data["stages"].get(stage, {})
        if previous.get("status") == "redo" and previous.get("outputs") != record:
            names = list(data["stages"])
            for later in names[names.index(stage) + 1 :]:
                log.warning(
                    "stage %s: made from outputs that were redone differently; redoing it", later
                )
                gone = data["stages"].pop(later)
                self._remove_outputs([*gone.get("outputs", {}), *gone.get("derived", [])])
        data["stages"][stage] = {
            "status": "done",
            "finished_at": time.time(),
            "outputs": record,
            "derived": [str(Path(p).relative_to(self.root)) for p in derived],
            **info,
        }
        write_json(self.manifest_path, data)
        self._checked.add(stage)

    def _remove_outputs(self, outputs: Iterable[str]) -> None:
        """Remove the recorded files (paths relative to the run), and folders left empty."""
        for rel in outputs:
            path = self.root / rel
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
            parent = path.parent
            while parent != self.root and parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()
                parent = parent.parent

    def set_value(self, key: str, value: Any) -> None:
        data = self.manifest()
        data[key] = value
        write_json(self.manifest_path, data)

    # ------------------------------------------------------------------ metrics
    def log_metrics(self, row: dict[str, Any]) -> None:
        append_jsonl(self.metrics_path, [{"time": round(time.time(), 3), **row}])

    def metrics(self) -> list[dict[str, Any]]:
        if not self.metrics_path.exists():
            return []
        return list(read_jsonl(self.metrics_path))


# --------------------------------------------------------------------------- output checks


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _fingerprints(root: Path, path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(path relative to the run, {"size", "sha256"}) of a file, or of every file in a folder."""
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    if not files or not files[0].is_file():
        raise IrpoError(f"{path}: a stage output is missing or empty")
    for f in files:
        yield str(f.relative_to(root)), {"size": f.stat().st_size, "sha256": _sha256(f)}


def _mismatch(root: Path, rel: str, meta: dict[str, Any]) -> str | None:
    """Why the file `rel` is not what the manifest recorded, or None when it is."""
    path = root / rel
    if not path.is_file():
        return f"{path} is missing"
    size = path.stat().st_size
    if size != meta.get("size"):
        return f"{path} has {size} bytes, {meta.get('size')} were written"
    if _sha256(path) != meta.get("sha256"):
        return f"{path} changed since it was written (SHA-256 differs)"
    return None


def _describe_holder(raw: bytes) -> str:
    try:
        info = json.loads(raw.decode())
        return f"pid {info['pid']} on host {info['host']}, since {info['started']}"
    except (ValueError, KeyError, TypeError):
        return "holder unknown"
