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


# --------------------------------------------------------------------------- a LLaVA-style dataset, as users bring it


def _llava(root, n_train=12, n_eval=4, image_dir="images", missing=()):
    """``root/train.json`` and ``root/eval.json`` in LLaVA form (``"image": "d3.png"``), the PNGs in ``image_dir``
    (``""``: next to the data files); the images named in ``missing`` are not written."""
    from PIL import ImageDraw

    (root / image_dir).mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("eval", n_eval)):
        rows = []
        for i in range(n):
            name, digit = f"{split}{i}.png", str(i % 10)
            if name not in missing:
                im = Image.new("RGB", (24, 24), "white")
                ImageDraw.Draw(im).text((8, 6), digit, fill="black")
                im.save(root / image_dir / name)
            rows.append({"id": f"{split}-{i}", "image": name, "conversations": [
                {"from": "human", "value": "<image>\n이 숫자는 무엇인가요?"}, {"from": "gpt", "value": digit}]})  # fmt: skip
        (root / f"{split}.json").write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    return root


def test_llava_images_in_a_subfolder_are_used_and_noted(tmp_path):
    _llava(tmp_path / "digits")
    splits = load_splits(DataSpec(source="digits"), base_dir=tmp_path)
    assert len(splits.train) == 12 and len(splits.eval) == 4 and not splits.report.skipped
    assert splits.train[3]["images"][0].size == (24, 24) and splits.train[3]["answer"] == "3"
    report = splits.report.to_json()
    assert report["image_folders"]["train"] == {"path": str(tmp_path / "digits" / "images"), "auto": True}
    note = report["notes"][0]
    assert "train.json" in note and "all 12 are under digits/images" in note
    assert "data.image_folder: digits/images" in note


def test_a_few_missing_images_load_and_are_counted(tmp_path):
    _llava(tmp_path / "d", image_dir="", missing=("train2.png", "train7.png"))
    splits = load_splits(DataSpec(source="d"), base_dir=tmp_path)
    report = splits.report
    assert len(splits.train) == 10 and len(splits.eval) == 4
    assert report.read == {"train": 12, "eval": 4} and report.reasons["train"] == {"image not found": 2}
    assert [m.split(":")[0] for m in report.skipped["train"]] == ["train.json row 3", "train.json row 8"]
    assert "train: 10 rows of 12 read, 2 skipped (image not found: 2)" in report.summary()
    assert report.to_json()["skipped"]["train"]["reasons"] == {"image not found": 2}
    assert not report.notes and report.image_folders["train"]["auto"] is False


def test_images_in_a_subfolder_with_some_missing_fail_with_the_setting_to_use(tmp_path):
    """Not every image is under images/, so the loader does not guess: the error says which setting fixes it."""
    _llava(tmp_path / "d", missing=("train0.png",))
    with pytest.raises(DataError) as e:
        load_splits(DataSpec(source="d"), base_dir=tmp_path)
    assert str(e.value.message).startswith(f"no usable training rows in {tmp_path / 'd' / 'train.json'}: read 12 rows")
    assert e.value.hint == (
        "images are not next to the data file; 11 of the 12 missing are under d/images: set data.image_folder: d/images"
    )
    fixed = load_splits(DataSpec(source="d", image_folder="d/images"), base_dir=tmp_path)
    assert len(fixed.train) == 11 and fixed.report.reasons["train"] == {"image not found": 1}


def test_no_image_found_names_file_counts_reasons_and_fix(tmp_path):
    _llava(tmp_path / "d", image_dir="elsewhere")
    (tmp_path / "d" / "elsewhere").rename(tmp_path / "gone")  # outside the data folder: nowhere to be found
    with pytest.raises(DataError) as e:
        load_splits(DataSpec(source="d"), base_dir=tmp_path)
    lines = e.value.message.splitlines()
    assert lines[0] == f"no usable training rows in {tmp_path / 'd' / 'train.json'}: read 12 rows, skipped 12 " \
                       "(image not found: 12)"  # fmt: skip
    assert lines[1:6] == [
        f"  train.json row {i + 1}: image 'train{i}.png' not found in {tmp_path / 'd'}" for i in range(5)
    ]
    assert lines[6] == "  … 7 more" and len(lines) == 7
    assert "data.image_folder" in e.value.hint
    report = e.value.report.to_json()  # what the run directory's data_report.json gets
    assert report["read"]["train"] == 12 and report["skipped"]["train"]["count"] == 12
    assert len(report["skipped"]["train"]["rows"]) == 12


def test_wrong_formats_name_the_expected_forms(tmp_path):
    _jsonl(tmp_path / "qa.jsonl", [{"question_text": "2+3은?", "label": "5"}] * 3 + [{"conversations": "2+3은? 5"}])
    with pytest.raises(DataError) as e:
        load_splits(DataSpec(source="qa.jsonl"), base_dir=tmp_path)
    assert "read 4 rows, skipped 4 (unknown row form: 3, malformed row: 1)" in e.value.message
    assert "qa.jsonl row 1: row has none of 'prompt', 'question', 'messages' or 'conversations' (its keys: " \
           "question_text, label)" in e.value.message  # fmt: skip
    assert "qa.jsonl row 4: 'conversations' must be a list of turns {from, value}" in e.value.message
    assert "'conversations' (LLaVA" in e.value.hint and "'messages'" in e.value.hint and "'prompt'" in e.value.hint

    (tmp_path / "rows.csv").write_text("question,answer\n2+3은?,5\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"rows.csv: unsupported file type '.csv'") as e:
        load_splits(DataSpec(source="rows.csv"), base_dir=tmp_path)
    assert ".jsonl (one JSON object per line), .json (a list of rows" in e.value.hint and ".parquet" in e.value.hint

    (tmp_path / "meta.json").write_text(json.dumps({"version": 1, "rows": []}), encoding="utf-8")
    with pytest.raises(DataError, match="expected a JSON list of rows, found an object with keys version, rows"):
        load_splits(DataSpec(source="meta.json"), base_dir=tmp_path)


def test_align_launch_leaves_data_report_json_when_loading_fails(tmp_path, tiny_model, capsys):
    """The run path users take: `align launch RECIPE` with a bad dataset exits 2 with the reasons and leaves
    runs/NAME/<stamp>/data_report.json; once every image is under images/, the run's log says which folder it used
    (that run in this process: a recipe without stages only loads the data)."""
    import subprocess
    import sys

    from align.pipeline import run_pipeline
    from align.recipe import load_recipe

    _llava(tmp_path / "digits", missing=("train4.png",))
    recipe = tmp_path / "digits.yaml"
    recipe.write_text(f"name: digits\noutput_dir: {tmp_path / 'runs'}\nmodel: {{path: {tiny_model}}}\n"
                      "data: {source: digits}\neval: {enabled: false}\n", encoding="utf-8")  # fmt: skip

    out = subprocess.run([sys.executable, "-m", "align.cli", "launch", str(recipe)], capture_output=True, text=True,
                         check=False, cwd=tmp_path)  # fmt: skip
    assert out.returncode == 2, out.stderr[-2000:]
    assert "error: no usable training rows in" in out.stderr and "train.json row 1: image 'train0.png'" in out.stderr
    assert "set data.image_folder: digits/images" in out.stderr
    path = tmp_path / "runs" / "digits" / "latest" / "data_report.json"
    assert f"what was read and skipped: {path.resolve()}" in out.stderr.replace("\n", "")
    report = json.loads(path.read_text())
    assert report["error"].startswith("no usable training rows") and "digits/images" in report["hint"]
    assert report["skipped"]["train"]["reasons"] == {"image not found": 12}

    Image.new("RGB", (24, 24)).save(tmp_path / "digits" / "images" / "train4.png")
    capsys.readouterr()
    run = run_pipeline(load_recipe(recipe))
    log = " ".join(capsys.readouterr().out.split())
    assert "train.json: the images are not next to the data file but all 12 are under digits/images" in log
    report = json.loads((run.path / "data_report.json").read_text())
    assert report["rows"] == {"train": 12, "eval": 4} and report["image_folders"]["train"]["auto"] is True
