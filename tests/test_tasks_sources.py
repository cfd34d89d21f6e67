"""Loading task data: formats, folders and splits, Hub ids offline, bad rows and their counts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from irpo.errors import IrpoError
from irpo.tasks import Task, get_task
from irpo.tasks.sources import files_for_split, iter_rows

ROWS = [
    {"question": "1+1?", "answer": "1+1=2\n#### 2"},
    {"question": "2+2?", "answer": "2+2=4\n#### 4"},
]


def _gsm8k() -> Task:
    return get_task("gsm8k")


def test_json_list_and_wrapped_list(tmp_path: Path) -> None:
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps(ROWS))
    wrapped = tmp_path / "wrapped.json"
    wrapped.write_text(json.dumps({"data": ROWS}))
    for path in (plain, wrapped):
        assert [p.answer for p in _gsm8k().load(str(path), "train")] == ["2", "4"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"train": ROWS}))
    with pytest.raises(IrpoError, match=r"bad\.json: expected a list of objects, or an object"):
        _gsm8k().load(str(bad), "train")
    broken = tmp_path / "broken.json"
    broken.write_text('[\n{"question": 1,\n')
    with pytest.raises(IrpoError, match=r"broken\.json:3: not valid JSON"):
        _gsm8k().load(str(broken), "train")
    item = tmp_path / "item.json"
    item.write_text(json.dumps([ROWS[0], {"question": "q"}]))
    with pytest.raises(IrpoError, match=r"item\.json: item 2: no 'answer' field"):
        _gsm8k().load(str(item), "train")


def test_parquet(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "train-00000-of-00001.parquet"
    pq.write_table(pa.Table.from_pylist([*ROWS, {"question": None, "answer": "#### 1"}]), path)
    with pytest.raises(
        IrpoError, match=r"train-00000-of-00001\.parquet: row 3: field 'question' is null"
    ):
        _gsm8k().load(str(path), "train")
    task = _gsm8k()
    assert [p.answer for p in task.load(str(tmp_path), "train", skip_bad_rows=True)] == ["2", "4"]
    broken = tmp_path / "x.parquet"
    broken.write_text("not parquet")
    with pytest.raises(IrpoError, match=r"x\.parquet: not a readable Parquet file"):
        _gsm8k().load(str(broken), "train")


def test_folder_picks_split_file_and_prefers_jsonl(tmp_path: Path) -> None:
    for name in ("train.jsonl", "train.json", "test.jsonl", "MATH_validation.jsonl", "notes.txt"):
        (tmp_path / name).write_text("")
    assert files_for_split(tmp_path, "train") == [tmp_path / "train.jsonl"]
    assert files_for_split(tmp_path, "dev") == [tmp_path / "MATH_validation.jsonl"]
    with pytest.raises(IrpoError, match=r"no file for split 'holdout' \(found: MATH_validation"):
        files_for_split(tmp_path, "holdout")
    shards = tmp_path / "shards"
    (shards / "data").mkdir(parents=True)
    for i in (1, 0):
        (shards / "data" / f"test-0000{i}-of-00002.jsonl").write_text(json.dumps(ROWS[i]) + "\n")
    assert [p.answer for p in _gsm8k().load(str(shards), "test")] == ["2", "4"]


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("missing.jsonl", "missing.jsonl: file not found"),
        ("./data/train", "./data/train: file not found"),
        ("some data.jsonl", "file not found"),
    ],
)
def test_missing_files(source: str, message: str) -> None:
    with pytest.raises(IrpoError, match=message):
        _gsm8k().load(source, "train")


def test_unsupported_format(tmp_path: Path) -> None:
    path = tmp_path / "ARC-Challenge-Test.csv"
    path.write_text("questionID,AnswerKey\n")
    with pytest.raises(IrpoError, match=r"unsupported format '\.csv'; use JSONL, JSON or Parquet"):
        _gsm8k().load(str(path), "test")


def test_hub_id_offline_gives_a_clear_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(IrpoError) as info:
        _gsm8k().load("openai/gsm8k:main", "train")
    message = str(info.value)
    assert message.startswith("openai/gsm8k:main: not a local file or folder, and loading it")
    assert message.endswith("pass a local JSONL/JSON/Parquet file or folder instead.")


def test_invalid_json_line_is_a_bad_row(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps(ROWS[0]) + "\n{oops\n\n" + json.dumps(ROWS[1]) + "\n")
    with pytest.raises(IrpoError, match=r"train\.jsonl:2: not valid JSON"):
        _gsm8k().load(str(path), "train")
    task = _gsm8k()
    problems, stats = task.load_with_stats(str(path), "train", skip_bad_rows=True)
    assert [p.id for p in problems] == ["train/0", "train/2"]
    assert (stats.rows, stats.skipped) == (3, 1)
    assert [r.where.rsplit(":", 1)[1] for r in iter_rows(str(path), "train")] == ["1", "2", "4"]


def test_limit_stops_reading(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS) + "{broken\n")
    task = _gsm8k()
    problems, stats = task.load_with_stats(str(path), "train", limit=2)
    assert len(problems) == 2 and stats.rows == 2  # the broken line is never read


def test_repeated_ids_and_empty_sources(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps({**r, "id": "same"}) + "\n" for r in ROWS))
    with pytest.raises(
        IrpoError, match=r"train\.jsonl:2: id 'same' repeats the row at .*train\.jsonl:1"
    ):
        _gsm8k().load(str(path), "train")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(IrpoError, match="task gsm8k: no usable rows for split 'train'"):
        _gsm8k().load(str(empty), "train")
    bad_only = tmp_path / "bad.jsonl"
    bad_only.write_text(json.dumps({"question": "q"}) + "\n")
    with pytest.raises(IrpoError, match="no usable rows"):
        _gsm8k().load(str(bad_only), "train", skip_bad_rows=True)


def test_skipped_reasons_are_capped(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps(ROWS[0]) + "\n" + (json.dumps({"question": "q"}) + "\n") * 30)
    task = _gsm8k()
    _, stats = task.load_with_stats(str(path), "train", skip_bad_rows=True)
    assert stats is not None
    assert (stats.rows, stats.loaded, stats.skipped, len(stats.skipped_reasons)) == (31, 1, 30, 20)
