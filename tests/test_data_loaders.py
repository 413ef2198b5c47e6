"""Loading user data: LLaVA conversations, messages, prompt/completion; bad rows skipped and reported."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from align.data import DataReport, load_splits
from align.data.loaders import load_file
from align.errors import DataError
from align.recipe import DataSpec


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def image_dir(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    Image.new("RGB", (32, 32), (255, 0, 0)).save(d / "red.png")
    (d / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    return d


def test_llava_conversations_and_bad_rows(tmp_path, image_dir):
    f = _jsonl(tmp_path / "train.jsonl", [
        {"id": "a", "image": "red.png",
         "conversations": [{"from": "human", "value": "<image>\n무슨 색인가요?"}, {"from": "gpt", "value": "빨간색"}]},
        {"id": "b", "image": "missing.png",
         "conversations": [{"from": "human", "value": "<image>\n?"}, {"from": "gpt", "value": "x"}]},
        {"id": "c", "image": "broken.png",
         "conversations": [{"from": "human", "value": "<image>\n?"}, {"from": "gpt", "value": "x"}]},
        {"id": "d", "conversations": [{"from": "human", "value": "답이 없는 질문"}]},
        {"id": "e", "messages": [{"role": "user", "content": "2+3은?"}, {"role": "assistant", "content": "답: 5"}],
         "task": "math"},
        {"id": "f", "prompt": "사과는?", "completion": "과일", "answer": "과일", "images": ["red.png"]},
    ])  # fmt: skip
    report = DataReport()
    ds = load_file(f, "train", report, image_folder=image_dir)
    assert ds["id"] == ["a", "e", "f"]
    first = ds[0]
    assert first["prompt"] == [{"role": "user", "content": "무슨 색인가요?"}]  # <image> tag moved to the images column
    assert first["completion"] == [{"role": "assistant", "content": "빨간색"}]
    assert first["answer"] == "빨간색" and first["task"] == "default"
    assert first["images"][0].size == (32, 32)
    assert ds[1]["task"] == "math" and ds[1]["images"] == []
    skipped = report.skipped["train"]
    assert len(skipped) == 3
    assert "row 2" in skipped[0] and "missing.png" in skipped[0] and "not found" in skipped[0]
    assert "row 3" in skipped[1] and "corrupt" in skipped[1]
    assert "row 4" in skipped[2] and "no answer" in skipped[2]


def test_malformed_jsonl_names_the_line(tmp_path):
    f = tmp_path / "bad.jsonl"
    f.write_text('{"prompt": "a", "completion": "b"}\n{not json\n', encoding="utf-8")
    with pytest.raises(DataError, match="line 2"):
        load_file(f, "train", DataReport())


def test_local_file_source_with_eval_fraction(tmp_path):
    rows = [{"prompt": f"{i} 더하기 1은?", "completion": f"답: {i + 1}", "task": "math"} for i in range(40)]
    _jsonl(tmp_path / "all.jsonl", rows)
    splits = load_splits(DataSpec(source="all.jsonl", eval_fraction=0.25), base_dir=tmp_path, seed=0)
    assert len(splits.train) == 30 and len(splits.eval) == 10
    assert set(splits.train["id"]).isdisjoint(splits.eval["id"])


def test_folder_source_and_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"prompt": "a", "completion": "b", "answer": "b"}] * 4
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "train.parquet")
    _jsonl(tmp_path / "test.jsonl", rows[:2])
    splits = load_splits(DataSpec(source=str(tmp_path)))
    assert len(splits.train) == 4 and len(splits.eval) == 2


def test_missing_source_and_no_usable_rows(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_splits(DataSpec(source="./nope.jsonl"), base_dir=tmp_path)
    _jsonl(tmp_path / "empty.jsonl", [{"conversations": [{"from": "human", "value": "?"}]}] * 3)
    with pytest.raises(DataError, match="no usable training rows"):
        load_splits(DataSpec(source="empty.jsonl", eval_source="empty.jsonl"), base_dir=tmp_path)


def test_unknown_synthetic_task():
    with pytest.raises(DataError, match="unknown synthetic task 'colour'.*'color'"):
        load_splits(DataSpec(tasks=["colour"]))
