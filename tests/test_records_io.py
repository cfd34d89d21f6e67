"""`irpo.records.atomic_output`: the one way files and folders are written atomically."""

from __future__ import annotations

from pathlib import Path

import pytest

from irpo.records import atomic_output, read_json, write_json, write_jsonl, write_text


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_a_file_is_replaced_only_when_the_block_succeeds(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "a.json"
    write_json(path, {"v": 1})
    with pytest.raises(RuntimeError, match="boom"), atomic_output(path) as tmp:
        tmp.write_text("half a fi", encoding="utf-8")
        raise RuntimeError("boom")
    assert read_json(path) == {"v": 1}
    assert _leftovers(path.parent) == []
    write_json(path, {"v": 2})
    assert path.read_text(encoding="utf-8") == '{\n  "v": 2\n}\n'
    assert _leftovers(path.parent) == []


def test_jsonl_and_text(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "r.jsonl", [{"a": 1}, {"b": "é"}])
    assert (tmp_path / "r.jsonl").read_text(encoding="utf-8") == '{"a": 1}\n{"b": "é"}\n'
    write_text(tmp_path / "c.yaml", "x: 1\n")
    assert (tmp_path / "c.yaml").read_text(encoding="utf-8") == "x: 1\n"


def test_a_folder_replaces_the_old_one_whole(tmp_path: Path) -> None:
    dest = tmp_path / "model"
    with atomic_output(dest, folder=True) as tmp:
        assert tmp.is_dir() and tmp.parent == tmp_path and list(tmp.iterdir()) == []
        (tmp / "old.bin").write_bytes(b"1")
    assert sorted(p.name for p in dest.iterdir()) == ["old.bin"]
    with pytest.raises(KeyboardInterrupt), atomic_output(dest, folder=True) as tmp:
        (tmp / "new.bin").write_bytes(b"2")
        raise KeyboardInterrupt
    assert sorted(p.name for p in dest.iterdir()) == ["old.bin"]  # the failed write left no trace
    with atomic_output(dest, folder=True) as tmp:
        (tmp / "new.bin").write_bytes(b"2")
    assert sorted(p.name for p in dest.iterdir()) == ["new.bin"]  # nothing of the old one kept
    assert (dest.stat().st_mode & 0o777) == 0o755
    assert _leftovers(tmp_path) == []
