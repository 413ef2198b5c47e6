"""Tiny benchmark fixtures in each published set's exact columns, with generated images (no NCSOFT data).

K-MMBench: hub parquet (index, question, hint, A-D, answer, category, l2-category, image, source, split, comment)
and VLMEvalKit's TSV (base64 images; circular copies at index + k·10⁶ naming the original row's index as image).
K-SEED: question_id, question, choice_a-d, answer, data_type, image. K-MMStar: index, question with "Options: A: …",
answer, category, l2_category, image. K-DTCBench: index, question, choice_a-d, answer, category, image.
K-LLaVA-W: question_id, question, image, caption, gpt_answer, category. Text sets: hub snapshot folders (README
``configs:`` + data files) in the columns lm-eval's task files read. Questions ask a shape's colour, the one thing
the tiny model learns in SFT, so scores can move between checkpoints.
"""

from __future__ import annotations

import base64
import io
import json
import random
from pathlib import Path

from PIL import Image, ImageDraw

from align.data.synthetic import COLORS

COLOR_NAMES = list(COLORS)
QUESTION = "도형은 무슨 색인가요?"


def shape_image(color: str, size: int = 64) -> Image.Image:
    img = Image.new("RGB", (size, size), (255, 255, 255))
    ImageDraw.Draw(img).ellipse([size // 5, size // 5, size * 4 // 5, size * 4 // 5], fill=COLORS[color])
    return img


def _b64(img: Image.Image) -> str:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def colour_questions(n: int, seed: int, options: int = 4) -> list[dict]:
    """n questions: colour, four option texts, the answer letter, a category."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        colour = COLOR_NAMES[i % len(COLOR_NAMES)]
        others = rng.sample([c for c in COLOR_NAMES if c != colour], options - 1)
        opts = others + [colour]
        rng.shuffle(opts)
        out.append({"colour": colour, "options": opts, "answer": "ABCD"[opts.index(colour)],
                    "category": ["attribute_recognition", "object_localization"][i % 2],
                    "l2": ["fine-grained perception", "coarse perception"][i % 2]})  # fmt: skip
    return out


def _write_parquet(rows: list[dict], path: Path, image_col: str = "image") -> Path:
    from datasets import Dataset, Features, Value
    from datasets import Image as HFImage

    features = Features({k: (HFImage() if k == image_col else Value("string") if isinstance(v, str) or v is None
                             else Value("int64")) for k, v in rows[0].items()})  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    Dataset.from_list(rows, features=features).to_parquet(str(path))
    return path


def kmmbench_parquet(out: Path, n: int = 6, seed: int = 0) -> Path:
    rows = []
    for i, q in enumerate(colour_questions(n, seed)):
        rows.append({"index": i, "question": QUESTION, "hint": None if i % 2 else "그림을 잘 보세요.",
                     **dict(zip("ABCD", q["options"])), "answer": q["answer"], "category": q["category"],
                     "image": shape_image(q["colour"]), "source": "fixture", "l2-category": q["l2"],
                     "comment": None, "split": "dev"})  # fmt: skip
    return _write_parquet(rows, out / "data" / "dev-00000-of-00001.parquet")


def kmmbench_tsv(path: Path, n: int = 4, seed: int = 1) -> Path:
    """VLMEvalKit's MMBench_DEV_KO.tsv layout with the circular copies in the file."""
    header = ("index", "question", "hint", "A", "B", "C", "D", "answer", "category", "image", "source", "l2-category",
              "comment", "split")  # fmt: skip
    lines = ["\t".join(header)]
    for i, q in enumerate(colour_questions(n, seed)):
        for k in range(4):
            opts = [q["options"][(j + k) % 4] for j in range(4)]
            answer = "ABCD"[opts.index(q["colour"])]
            image = _b64(shape_image(q["colour"])) if k == 0 else str(i)
            lines.append("\t".join([str(i + k * 1_000_000), QUESTION, "", *opts, answer, q["category"], image,
                                    "fixture", q["l2"], "", "dev"]))  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def kseed_parquet(out: Path, n: int = 5, seed: int = 2) -> Path:
    rows = [{"answer": q["answer"], "choice_a": q["options"][0], "choice_b": q["options"][1],
             "choice_c": q["options"][2], "choice_d": q["options"][3], "data_type": "image", "question": QUESTION,
             "question_id": f"{100 + i}", "image": shape_image(q["colour"])}
            for i, q in enumerate(colour_questions(n, seed))]  # fmt: skip
    return _write_parquet(rows, out / "data" / "test-00000-of-00001.parquet")


def kmmstar_parquet(out: Path, n: int = 5, seed: int = 3) -> Path:
    rows = []
    for i, q in enumerate(colour_questions(n, seed)):
        opts = ", ".join(f"{k}: {v}" for k, v in zip("ABCD", q["options"]))
        rows.append({"index": i, "question": f"{QUESTION}\nOptions: {opts}", "image": shape_image(q["colour"]),
                     "answer": q["answer"], "category": "coarse perception", "l2_category": "image scene and topic",
                     "meta_info": None})  # fmt: skip
    return _write_parquet(rows, out / "data" / "val-00000-of-00001.parquet")


def kdtc_parquet(out: Path, n: int = 6, seed: int = 4) -> Path:
    rows = [{"index": i, "question": QUESTION, "choice_a": q["options"][0], "choice_b": q["options"][1],
             "choice_c": q["options"][2], "choice_d": q["options"][3], "answer": q["answer"],
             "category": ["document", "table", "chart"][i % 3], "image": shape_image(q["colour"])}
            for i, q in enumerate(colour_questions(n, seed))]  # fmt: skip
    return _write_parquet(rows, out / "data" / "test-00000-of-00001.parquet")


def kllavaw_parquet(out: Path, n: int = 3) -> Path:
    cats = ["conv", "detail", "complex"]
    rows = [{"question_id": f"{i}", "question": QUESTION, "image": shape_image(c),
             "caption": f"흰 바탕에 {c} 원이 하나 있다.", "gpt_answer": f"도형은 {c}입니다.", "category": cats[i % 3]}
            for i, c in enumerate(COLOR_NAMES[:n])]  # fmt: skip
    return _write_parquet(rows, out / "data" / "test-00000-of-00001.parquet")


def caption_jsonl(out: Path, n: int = 4) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, c in enumerate(COLOR_NAMES[:n]):
        shape_image(c).save(out / f"img{i}.png")
        rows.append({"id": f"cap{i}", "image": f"img{i}.png", "captions": [f"{c} 원", f"흰 바탕에 {c} 원이 있다"]})
    path = out / "captions.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path


def _snapshot(out: Path, configs: dict[str, dict[str, list[dict]]], fmt: str = "jsonl") -> Path:
    """A hub snapshot folder: README ``configs:`` and one data file per config and split."""
    readme = ["---", "configs:"]
    for name, splits in configs.items():
        readme += [f"- config_name: {name}", "  data_files:"]
        for split, rows in splits.items():
            rel = f"data/{name}-{split}.{fmt}"
            (out / "data").mkdir(parents=True, exist_ok=True)
            if fmt == "csv":
                import csv

                with open(out / rel, "w", newline="", encoding="utf-8") as f:
                    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
                    writer.writeheader()
                    writer.writerows(rows)
            else:
                (out / rel).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
            readme += [f"  - split: {split}", f"    path: {rel}"]
    (out / "README.md").write_text("\n".join(readme + ["---", ""]))
    return out


def kmmlu_snapshot(out: Path, subjects=("Accounting", "Korean-History")) -> Path:
    """HAERAE-HUB/KMMLU's layout: data/<Subject>-<split>.csv with question, answer (1-4), A-D, Category,
    Human Accuracy."""

    def row(i):
        return {"question": f"{i + 1} 더하기 1은 무엇인가?", "answer": (i % 4) + 1,
                **{k: str(i + 1 + j - (i % 4)) for j, k in enumerate("ABCD")}, "Category": "fixture",
                "Human Accuracy": 0.5}  # fmt: skip

    sizes = {"train": 3, "dev": 5, "test": 3}  # five dev rows: the paper's 5-shot prompt draws from dev
    return _snapshot(out, {s: {sp: [row(i) for i in range(n)] for sp, n in sizes.items()} for s in subjects},
                     fmt="csv")  # fmt: skip


def haerae_snapshot(out: Path) -> Path:
    """HAE_RAE_BENCH: query (question with (A)…(E) choices), answer like "(A)"."""
    rows = [{"query": f"다음 중 '{w}'의 뜻은?\n(A) 과일\n(B) 바다\n(C) 나무\n(D) 하늘\n(E) 학교", "answer": a}
            for w, a in (("사과", "(A)"), ("소나무", "(C)"))]  # fmt: skip
    names = ("general_knowledge", "history", "loan_words", "rare_words", "standard_nomenclature")
    return _snapshot(out, {n: {"test": rows} for n in names})


def click_snapshot(out: Path) -> Path:
    """EunsuKim/CLIcK: id (its prefix decides the sub-task), paragraph, question, choices, answer (the text)."""
    culture = ["Culture_economy_1", "Culture_geography_1", "KHB_1", "Culture_law_1", "Culture_politics_1",
               "Culture_popular_1", "Culture_society_1", "Culture_tradition_1"]  # fmt: skip
    language = ["CSAT_korean_22_5", "CSAT_korean_20_15", "CSAT_korean_20_5"]  # text, grammar, function filters
    rows = [{"id": i, "paragraph": "" if n % 2 else "한국의 수도는 서울이다.", "question": "한국의 수도는?",
             "choices": ["부산", "서울", "대구", "광주"] + (["인천"] if i.startswith("CSAT") else []), "answer": "서울"}
            for n, i in enumerate(culture + language)]  # fmt: skip
    return _snapshot(out, {"default": {"train": rows}})


def kobest_snapshot(out: Path) -> Path:
    """skt/kobest_v1: boolq, copa, hellaswag, sentineg, wic in their columns."""
    rows = {
        "boolq": [{"paragraph": "서울은 한국의 수도이다.", "question": "서울은 한국의 수도인가?", "label": 1},
                  {"paragraph": "고래는 포유류이다.", "question": "고래는 어류인가?", "label": 0}],
        "copa": [{"premise": "비가 왔다.", "question": "결과", "alternative_1": "땅이 젖었다.",
                  "alternative_2": "해가 떴다.", "label": 0}],
        "hellaswag": [{"context": "그는 밥을 먹고", "ending_1": "설거지를 했다.", "ending_2": "하늘을 날았다.",
                       "ending_3": "돌이 되었다.", "ending_4": "사라졌다.", "label": 0}],
        "sentineg": [{"sentence": "정말 좋은 영화였다.", "label": 1}],
        "wic": [{"word": "배", "context_1": "배가 아프다.", "context_2": "배를 타고 갔다.", "label": 0}],
    }  # fmt: skip
    return _snapshot(out, {k: {sp: v for sp in ("train", "validation", "test")} for k, v in rows.items()})


def build_all(root: Path) -> dict[str, Path]:
    """Every fixture under ``root``; benchmark name -> source."""
    return {
        "k-mmbench": kmmbench_parquet(root / "K-MMBench").parent.parent,
        "k-mmbench-tsv": kmmbench_tsv(root / "MMBench_DEV_KO.tsv"),
        "k-seed": kseed_parquet(root / "K-SEED").parent.parent,
        "k-mmstar": kmmstar_parquet(root / "K-MMStar").parent.parent,
        "k-dtcbench": kdtc_parquet(root / "K-DTCBench").parent.parent,
        "k-llava-w": kllavaw_parquet(root / "K-LLaVA-W").parent.parent,
        "caption": caption_jsonl(root / "captions"),
        "kmmlu": kmmlu_snapshot(root / "KMMLU"),
        "haerae": haerae_snapshot(root / "HAE_RAE_BENCH"),
        "click": click_snapshot(root / "CLIcK"),
        "kobest": kobest_snapshot(root / "kobest_v1"),
    }


def kseed_with_bad_rows(out: Path) -> Path:
    """Three good K-SEED rows and one of each bad kind: no image, an answer outside the options, no options."""
    good = [{"answer": q["answer"], "choice_a": q["options"][0], "choice_b": q["options"][1],
             "choice_c": q["options"][2], "choice_d": q["options"][3], "data_type": "image", "question": QUESTION,
             "question_id": f"{i}", "image": shape_image(q["colour"])}
            for i, q in enumerate(colour_questions(3, 5))]  # fmt: skip
    no_image = {**good[0], "question_id": "no-image", "image": None}
    outside = {**good[1], "question_id": "answer-E", "answer": "E"}
    no_options = {**good[2], "question_id": "no-options", "choice_a": None, "choice_b": None, "choice_c": None,
                  "choice_d": None}  # fmt: skip
    return _write_parquet(good + [no_image, outside, no_options], out / "data" / "test-00000-of-00001.parquet")


def tiny_judge(out: Path, reply: str = "8 6", steps: int = 30) -> Path:
    """tiny-korean-lm taught to answer every judge prompt with ``reply`` (a stand-in judge whose verdict is known)."""
    import shutil

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from align.benchmarks.judge import judge_prompt
    from align.models import resolve_model_path

    src = Path(resolve_model_path("tiny-korean-lm", progress=None))
    tok, model = AutoTokenizer.from_pretrained(src), AutoModelForCausalLM.from_pretrained(src)
    messages = judge_prompt(QUESTION, "흰 바탕에 빨간색 원이 하나 있다.", "도형은 빨간색입니다.", "빨간색", "conv")
    prompt = tok(tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True),
                 add_special_tokens=False)["input_ids"]  # fmt: skip
    answer = tok(f"{reply}<|im_end|><|endofturn|>", add_special_tokens=False)["input_ids"]
    x, y = torch.tensor([prompt + answer]), torch.tensor([[-100] * len(prompt) + answer])
    threads = torch.get_num_threads()
    torch.manual_seed(0)
    torch.set_num_threads(1)  # a 1-example loop: threads only contend
    try:
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        for _ in range(steps):
            model(input_ids=x, labels=y).loss.backward()
            opt.step()
            opt.zero_grad()
    finally:
        torch.set_num_threads(threads)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    for extra in ("generation_config.json", "chat_template.jinja"):
        if (src / extra).exists():
            shutil.copy(src / extra, out / extra)
    return out


def tiny_sbert(out: Path) -> Path:
    """A sentence-transformers model (1-layer BERT, WordPiece trained on a few Korean sentences, mean pooling)."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertConfig, BertModel, BertTokenizerFast

    texts = (
        [f"흰 바탕에 {c} 원이 있다" for c in COLOR_NAMES] + [f"{c} 원" for c in COLOR_NAMES] + ["도형은 무슨 색인가요"]
    )
    wp = BertWordPieceTokenizer(lowercase=False, strip_accents=False)
    wp.train_from_iterator(texts, vocab_size=200, min_frequency=1)
    raw = out / "bert"
    raw.mkdir(parents=True, exist_ok=True)
    wp.save_model(str(raw))
    tok = BertTokenizerFast(vocab_file=str(raw / "vocab.txt"), do_lower_case=False, strip_accents=False)
    torch.manual_seed(0)
    bert = BertModel(BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                intermediate_size=64, max_position_embeddings=64))  # fmt: skip
    bert.save_pretrained(raw)
    tok.save_pretrained(raw)
    word = Transformer(str(raw), max_seq_length=32)
    SentenceTransformer(modules=[word, Pooling(32, "mean")], device="cpu").save(str(out / "st"))
    return out / "st"


def training_jsonl(out: Path, n: int = 600, seed: int = 100) -> Path:
    """SFT rows in the benchmarks' prompt formats (other questions than the fixtures: another seed), for runs that
    should move the benchmark numbers (scripts/bench_demo.py): multiple choice answered with the letter, the plain
    colour question answered with the colour, and a caption."""
    from align.benchmarks.choice import Item, build_prompt
    from align.benchmarks.registry import BENCHMARKS

    out.mkdir(parents=True, exist_ok=True)
    layouts = [(b.options["layout"], b.options["suffix"]) for b in BENCHMARKS.values() if b.family == "choice"]
    rows = []
    for i, q in enumerate(colour_questions(n, seed)):
        name = f"train{i}.png"
        shape_image(q["colour"]).save(out / name)
        kind = i % (len(layouts) + 2)
        if kind < len(layouts):
            layout, suffix = layouts[kind]
            options = dict(zip("ABCD", q["options"]))
            question = QUESTION + (
                "\nOptions: " + ", ".join(f"{k}: {v}" for k, v in options.items()) if layout == "mmstar" else ""
            )
            item = Item(str(i), str(i), question, None, options, q["answer"], None, None, None, layout == "mmstar")
            rows.append({"prompt": build_prompt(item, layout, suffix), "completion": q["answer"], "answer": q["answer"],
                         "task": "choice", "images": [name]})  # fmt: skip
        elif kind == len(layouts):
            rows.append({"prompt": QUESTION, "completion": q["colour"], "task": "color", "images": [name]})
        else:
            rows.append({"prompt": "이미지를 한 문장으로 설명해 주세요.", "completion": f"흰 바탕에 {q['colour']} 원이 있다",
                         "task": "caption", "images": [name]})  # fmt: skip
    path = out / "train.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path
