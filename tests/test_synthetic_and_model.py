"""The synthetic Korean tasks and the embedded tiny VLM."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from align.data.synthetic import TASKS, SyntheticSpec, build_synthetic, examples, render


def test_generator_is_deterministic_and_prefix_stable():
    a = examples(SyntheticSpec(train_size=50, eval_size=10, seed=1), "train")
    b = examples(SyntheticSpec(train_size=50, eval_size=10, seed=1), "train")
    assert [(e.id, e.question, e.answer, e.image) for e in a] == [(e.id, e.question, e.answer, e.image) for e in b]
    c = examples(SyntheticSpec(train_size=50, eval_size=10, seed=2), "train")
    assert [e.answer for e in a] != [e.answer for e in c]
    bigger = {e.id: e for e in examples(SyntheticSpec(train_size=100, eval_size=10, seed=1), "train")}
    assert all(bigger[e.id].answer == e.answer for e in a)  # growing a split keeps its earlier rows


def test_every_task_has_rows_and_the_gold_answer_scores_one():
    from rewards.tasks import accuracy

    rows = examples(SyntheticSpec(train_size=100, eval_size=10, seed=0), "train")
    assert {e.task for e in rows} == set(TASKS)
    scores = accuracy(None, [e.answer for e in rows], task=[e.task for e in rows], answer=[e.answer for e in rows])
    assert scores == [1.0] * len(rows)
    wrong = accuracy(None, ["모르겠어요"] * len(rows), task=[e.task for e in rows], answer=[e.answer for e in rows])
    assert wrong == [0.0] * len(rows)


def test_sft_answers_come_in_natural_phrasings_that_the_rewards_pay():
    """The SFT target says the reference the way a chat model does (terse, or a sentence with a copula, quotes,
    a politeness ending); every phrasing of every row scores 1, and each task uses at least three phrasings."""
    from rewards.tasks import accuracy

    rows = examples(SyntheticSpec(train_size=400, eval_size=0, seed=5), "train")
    said = [e.completion for e in rows]
    assert accuracy(None, said, task=[e.task for e in rows], answer=[e.answer for e in rows]) == [1.0] * len(rows)
    for task in TASKS:
        forms = {e.completion.replace(e.answer.removeprefix("답: "), "{a}") for e in rows if e.task == task}
        assert len(forms) >= 3, (task, forms)
    assert any(e.completion != e.answer and e.completion.endswith(("입니다.", "예요.", "이에요.")) for e in rows)


def test_answers_are_korean_and_images_show_the_answer():
    rows = examples(SyntheticSpec(train_size=40, eval_size=10, seed=0), "train")
    for e in rows:
        if e.task == "count":
            assert e.answer.endswith("개") and len(e.image["shapes"]) == int(e.answer[:-1])
        if e.task == "color":
            img = render(e, 64)
            x1, y1, x2, y2 = e.image["shapes"][0]["box"]
            from align.data.synthetic import COLORS

            assert img.getpixel(((x1 + x2) // 2, (y1 + y2) // 2 + 2)) == COLORS[e.answer]
        if e.task == "arith":
            assert e.image is None and e.answer.startswith("답: ")
        if e.task == "bbox":
            assert e.answer.startswith("<bbox>") and e.answer.endswith("</bbox>")
        if e.task == "ocr":
            img = render(e, 64)
            assert img.convert("L").getextrema()[0] < 60  # black glyphs were drawn


def test_build_writes_jsonl_and_images(tmp_path):
    out = build_synthetic(tmp_path / "d", SyntheticSpec(train_size=20, eval_size=10))
    train = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    assert len(train) == 20 and (out / "meta.json").exists()
    for row in train:
        assert set(row) == {"id", "task", "prompt", "completion", "answer", "images"}
        for rel in row["images"]:
            assert (out / rel).exists()
    mtime = (out / "train.jsonl").stat().st_mtime
    build_synthetic(tmp_path / "d", SyntheticSpec(train_size=20, eval_size=10))
    assert (out / "train.jsonl").stat().st_mtime == mtime  # cached


def test_tiny_model_loads_with_auto_classes(tiny_model):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    proc = AutoProcessor.from_pretrained(tiny_model)
    model = AutoModelForImageTextToText.from_pretrained(tiny_model)
    assert type(model).__name__ == "Idefics3ForConditionalGeneration"
    assert model.config.text_config.head_dim == 64
    assert 1e6 < sum(p.numel() for p in model.parameters()) < 5e6
    tok = proc.tokenizer
    for t in ("<|im_start|>", "<|im_end|>", "<|endofturn|>", "<|stop|>", "<image>", "<bbox>"):
        assert len(tok(t, add_special_tokens=False)["input_ids"]) == 1, t
    assert model.generation_config.eos_token_id == [tok.convert_tokens_to_ids("<|endofturn|>"),
                                                   tok.convert_tokens_to_ids("<|stop|>")]  # fmt: skip


def test_chat_template_is_hyperclovax_style(tiny_model):
    from transformers import AutoProcessor

    proc = AutoProcessor.from_pretrained(tiny_model)
    msgs = [
        {"role": "system", "content": "친절하게 답하세요."},
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "몇 개?"}]},
        {"role": "assistant", "content": "3개"},
    ]
    text = proc.apply_chat_template(msgs, tokenize=False)
    assert text == (
        "<|im_start|>system\n친절하게 답하세요.<|im_end|>\n<|im_start|>user\n<image>몇 개?<|im_end|>\n"
        "<|im_start|>assistant\n3개<|im_end|><|endofturn|>"
    )
    prompt = proc.apply_chat_template(msgs[:2], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|im_end|>\n<|im_start|>assistant\n")


def test_tiny_model_is_deterministic(tmp_path, tiny_model):
    from safetensors.torch import load_file

    from align.models.tiny.korean_vlm import build_tiny

    other = build_tiny(tmp_path / "again")
    a, b = load_file(f"{tiny_model}/model.safetensors"), load_file(f"{other}/model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "again" / "tokenizer.json").read_text() == Path(f"{tiny_model}/tokenizer.json").read_text()


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_engine_generates_with_images_and_stops(tiny_model, small_data, temperature):
    from align.recipe import RolloutSpec
    from rollouts import Sampling, make_engine

    engine = make_engine(RolloutSpec(engine="hf"), tiny_model)
    rows = small_data.eval.select(range(6))
    outs = engine.generate(list(rows["prompt"]), list(rows["images"]),
                           Sampling(n=2, temperature=temperature, max_new_tokens=12, seed=0))  # fmt: skip
    assert len(outs) == 6 and all(len(o) == 2 for o in outs)
    stop = set(engine.model.generation_config.eos_token_id)
    banned = {engine.model.config.image_token_id}
    for group in outs:
        for c in group:
            assert len(c.token_ids) == len(c.logprobs) <= 12
            assert all(lp <= 0 for lp in c.logprobs)
            assert not banned & set(c.token_ids)
            if c.finish_reason == "stop":
                assert c.token_ids[-1] in stop
            else:
                assert len(c.token_ids) == 12
    if temperature == 0.0:
        assert all(g[0].text == g[1].text for g in outs)  # greedy is deterministic
