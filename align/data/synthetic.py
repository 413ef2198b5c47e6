"""Synthetic Korean tasks with verifiable answers, generated deterministically from a seed.

Tasks (``task`` column; ``answer`` is the reference the rewards read):
  count  - count the shapes in an image                  answer "3개"
  color  - name the colour of the shape in an image      answer "빨간색"
  ocr    - read the Korean word rendered in an image      answer "사과"
  arith  - a Korean arithmetic word problem (text only)   answer "답: 7"
  bbox   - locate the shape, VARCO-VISION box format      answer "<bbox>0.19, 0.31, 0.50, 0.62</bbox>"
  caption - describe the picture (image-caption pairs for connector alignment, LLaVA-pretrain style;
            opt-in: not in the default task set)             answer "빨간색 원 3개"
  describe - describe a scene of 1-3 groups of shapes (colour, count, column) in free Korean (V-RLHF; opt-in)
            answer "왼쪽에 빨간색 원 두 개가 있고, 오른쪽에는 파란 삼각형이 하나 있습니다." (the first of 5
            references in varied phrasings); the ``scene`` column (JSON) holds the ground truth and the references

The SFT target (``completion``) says the answer the way a chat model does, in one of several phrasings per task
(``PHRASINGS``: the terse reference itself, and sentences with copulas, politeness endings and quotes), so the
rewards and the eval read free-form answers here as they will on a real model.

Row ``i`` of a task and split depends only on (seed, split, task, i), so growing a split keeps its earlier rows.
Rows are written as JSON lines with image paths relative to the dataset folder (LLaVA-style).
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

from align.io import atomic_dir, atomic_write_json

TASKS = ("count", "color", "ocr", "arith", "bbox")  # the default set
ALL_TASKS = TASKS + ("caption", "describe")
SHAPE_NAMES = {"circle": "원", "square": "사각형", "triangle": "삼각형"}
CAPTION_PROMPTS = (
    "그림을 간단히 설명해 주세요.",
    "이 이미지에 무엇이 있나요?",
    "",
)  # "" = the image alone (LLaVA pretrain)
GENERATOR_VERSION = 2

COLORS = {
    "빨간색": (220, 30, 30),
    "파란색": (30, 70, 220),
    "초록색": (30, 160, 60),
    "노란색": (235, 200, 20),
    "보라색": (140, 50, 180),
    "주황색": (245, 130, 20),
    "검은색": (25, 25, 25),
}
SHAPES = ("circle", "square", "triangle")
OCR_WORDS = ("사과", "바다", "나무", "하늘", "학교", "친구", "김치", "한글", "서울", "우유", "기차", "시계")
NAMES = ("민수", "지수", "영희", "철수", "하나", "유리", "서준", "도윤")
ITEMS = ("사과", "귤", "사탕", "연필", "공책", "구슬", "딸기", "쿠키")

QUESTIONS = {
    "count": ("이미지에 도형이 몇 개 있나요?", "그림 속 도형의 개수를 세어 주세요.", "도형은 모두 몇 개인가요?"),
    "color": ("도형은 무슨 색인가요?", "이 도형의 색깔을 말해 주세요.", "그림에 있는 도형의 색은 무엇인가요?"),
    "ocr": ("이미지에 적힌 글자를 읽어 주세요.", "그림 속 단어는 무엇인가요?", "이미지의 글씨를 그대로 적어 주세요."),
    "bbox": ("도형의 위치를 <bbox> 좌표로 알려 주세요.", "도형을 감싸는 상자의 좌표를 말해 주세요."),
}
ADD_TEMPLATES = (
    "{n1} {item} {a}개를 가지고 있었습니다. {n2} {b}개를 더 주었습니다. {n1s} 가진 {i2} 모두 몇 개인가요?",
    "바구니에 {i0} {a}개 있습니다. {n2} {b}개를 더 넣었습니다. 바구니에 있는 {i2} 모두 몇 개인가요?",
)
SUB_TEMPLATES = (
    "{n1} {item} {a}개를 가지고 있었습니다. 그중 {b}개를 먹었습니다. 남은 {i2} 몇 개인가요?",
    "바구니에 {i0} {a}개 있었습니다. {n2} {b}개를 꺼냈습니다. 바구니에 남은 {i2} 몇 개인가요?",
)


# How the SFT answer says the reference. {a}: the reference's value (the count with 개, the colour, the word, the
# result, the <bbox> box); {cop}: the copula 예요/이에요 that fits {a}; {quote}: 라고/이라고; {shape}: the counted shape
# with its subject particle; {calc}: the arithmetic.
PHRASINGS = {
    "count": ("{a}", "{a}입니다.", "도형은 모두 {a}{cop}.", "이미지에 {shape} {a} 있습니다."),
    "color": ("{a}", "{a}입니다.", "도형은 {a}{cop}.", "이 도형의 색깔은 {a}입니다."),
    "ocr": ("{a}", "'{a}'{quote} 적혀 있습니다.", '이미지에 적힌 글자는 "{a}"입니다.', "글자는 {a}{cop}."),
    "arith": ("답: {a}", "{calc}이므로 답은 {a}입니다.", "정답은 {a}입니다.", "모두 계산하면 {a}개{cop}."),
    "bbox": ("{a}", "{a}입니다.", "도형은 {a}에 있어요."),
}


def _phrase(rng: random.Random, task: str, value: str, **fields) -> str:
    """One of the task's phrasings; drawn last from the row's generator, so the row's content is as before."""
    ends_in_consonant = _has_batchim(value) if value[-1:].isalpha() else False
    return rng.choice(PHRASINGS[task]).format(
        a=value,
        cop="이에요" if ends_in_consonant else "예요",
        quote="이라고" if ends_in_consonant else "라고",
        **fields,
    )


def _has_batchim(word: str) -> bool:
    code = ord(word[-1]) - 0xAC00
    return 0 <= code < 11172 and code % 28 != 0


def _topic(word: str) -> str:  # 은/는
    return word + ("은" if _has_batchim(word) else "는")


def _subject(word: str) -> str:  # 이/가
    return word + ("이" if _has_batchim(word) else "가")


@dataclass(frozen=True)
class SyntheticSpec:
    """What to generate. Sizes are per split and spread evenly over the tasks."""

    tasks: tuple[str, ...] = TASKS
    train_size: int = 2000
    eval_size: int = 200
    seed: int = 0
    image_size: int = 64
    max_count: int = 4
    max_operand: int = 5
    ocr_words: int = 8

    def fingerprint(self) -> str:
        blob = json.dumps({"v": GENERATOR_VERSION, **asdict(self)}, sort_keys=True)
        return hashlib.sha1(blob.encode()).hexdigest()[:10]


@dataclass
class Example:
    id: str
    task: str
    question: str
    answer: str
    image: dict | None = field(default=None)  # drawing instructions, rendered by render()
    completion: str = ""  # the SFT answer: the reference in one of the task's phrasings ("" = the reference itself)
    scene: dict | None = None  # describe: {"objects": [...], "references": [...]}, the ``scene`` column


def _place(rng: random.Random, size: int, extent: int, taken: list[tuple[int, int, int, int]], xs=None):
    """A free box of side ``extent`` (2 px from the others), its x within ``xs`` (default: the whole image)."""
    x_lo, x_hi = xs or (1, size - extent - 1)
    for _ in range(200):
        x, y = rng.randint(x_lo, x_hi), rng.randint(1, size - extent - 1)
        box = (x, y, x + extent, y + extent)
        if all(box[2] + 2 <= t[0] or t[2] + 2 <= box[0] or box[3] + 2 <= t[1] or t[3] + 2 <= box[1] for t in taken):
            return box
    return None


def make_example(spec: SyntheticSpec, split: str, task: str, i: int) -> Example:
    rng = random.Random(f"{spec.seed}/{split}/{task}/{i}")
    ex_id = f"{split}-{task}-{i:05d}"
    s = spec.image_size
    if task == "count":
        shape = rng.choice(SHAPES)
        extent = max(6, s // 7)
        while True:
            n, taken = rng.randint(1, spec.max_count), []
            for _ in range(n):
                box = _place(rng, s, extent, taken)
                if box is None:
                    break
                taken.append(box)
            if len(taken) == n:
                break
        shapes = [{"shape": shape, "box": b, "color": rng.choice(list(COLORS))} for b in taken]
        question = rng.choice(QUESTIONS[task])
        said = _phrase(rng, task, f"{n}개", shape=_subject(SHAPE_NAMES[shape]))
        return Example(ex_id, task, question, f"{n}개", {"shapes": shapes}, said)
    if task == "color":
        color, extent = rng.choice(list(COLORS)), rng.randint(s // 3, s // 2)
        box = _place(rng, s, extent, [])
        shapes = [{"shape": rng.choice(SHAPES), "box": box, "color": color}]
        question = rng.choice(QUESTIONS[task])
        return Example(ex_id, task, question, color, {"shapes": shapes}, _phrase(rng, task, color))
    if task == "ocr":
        word = rng.choice(OCR_WORDS[: spec.ocr_words])
        font_size = rng.randint(int(s * 0.36), int(s * 0.42))
        jitter = max(1, s // 16)
        x = (s - 2 * font_size) // 2 + rng.randint(-jitter, jitter)
        y = (s - font_size) // 2 + rng.randint(-jitter, jitter)
        question = rng.choice(QUESTIONS[task])
        image = {"text": word, "xy": (max(0, x), max(0, y)), "font_size": font_size}
        return Example(ex_id, task, question, word, image, _phrase(rng, task, word))
    if task == "bbox":
        extent = rng.randint(s // 5, s // 2)
        box = _place(rng, s, extent, [])
        shapes = [{"shape": rng.choice(SHAPES), "box": box, "color": rng.choice(list(COLORS))}]
        x1, y1, x2, y2 = (v / s for v in box)
        answer = f"<bbox>{x1:.2f}, {y1:.2f}, {x2:.2f}, {y2:.2f}</bbox>"
        question = rng.choice(QUESTIONS[task])
        return Example(ex_id, task, question, answer, {"shapes": shapes}, _phrase(rng, task, answer))
    if task == "caption":
        shape, color = rng.choice(SHAPES), rng.choice(list(COLORS))
        extent, taken = max(6, s // 7), []
        for _ in range(rng.randint(1, spec.max_count)):
            box = _place(rng, s, extent, taken)
            if box is not None:
                taken.append(box)
        shapes = [{"shape": shape, "box": b, "color": color} for b in taken]
        caption = f"{color} {SHAPE_NAMES[shape]} {len(taken)}개"
        return Example(ex_id, task, rng.choice(CAPTION_PROMPTS), caption, {"shapes": shapes})
    if task == "describe":
        objects, shapes = describe_scene(rng, s, spec.max_count)
        question = rng.choice(DESCRIBE_PROMPTS)
        refs = [describe_text(objects, random.Random(f"{spec.seed}/{split}/{task}/{i}/ref{k}")) for k in range(5)]
        scene = {"objects": objects, "references": refs}
        return Example(ex_id, task, question, refs[0], {"shapes": shapes}, refs[0], scene)
    if task == "arith":
        n1, n2 = rng.sample(NAMES, 2)
        item = rng.choice(ITEMS)
        if rng.random() < 0.5:
            a, b = rng.randint(1, spec.max_operand), rng.randint(1, spec.max_operand)
            template, result = rng.choice(ADD_TEMPLATES), a + b
        else:
            a = rng.randint(2, spec.max_operand)
            b = rng.randint(1, a - 1)
            template, result = rng.choice(SUB_TEMPLATES), a - b
        question = template.format(
            n1=_topic(n1), n1s=_subject(n1), n2=_subject(n2), i0=_subject(item), item=item,
            i2=_topic(item), a=a, b=b,
        )  # fmt: skip
        calc = f"{a} + {b} = {result}" if template in ADD_TEMPLATES else f"{a} - {b} = {result}"
        return Example(ex_id, task, question, f"답: {result}", None, _phrase(rng, task, str(result), calc=calc))
    raise ValueError(f"unknown synthetic task {task!r}; choose from {', '.join(ALL_TASKS)}")


# --- describe: scenes of shape groups and natural Korean descriptions of them ------------------------------------

DESCRIBE_PROMPTS = ("이 그림을 설명해 주세요.", "그림에 있는 도형들을 색, 개수, 위치와 함께 설명해 주세요.",
                    "이미지에 무엇이 있는지 자세히 묘사해 주세요.")  # fmt: skip
POSITIONS = ("왼쪽", "가운데", "오른쪽")  # the column a group stands in
SHAPE_WORDS = {"원": ("원", "원", "원", "동그라미"), "사각형": ("사각형", "사각형", "네모"),
               "삼각형": ("삼각형", "삼각형", "세모")}  # fmt: skip
COLOR_WORDS = {"빨간색": ("빨간색", "빨간"), "파란색": ("파란색", "파란"), "초록색": ("초록색", "초록"),
               "노란색": ("노란색", "노란"), "보라색": ("보라색",), "주황색": ("주황색",), "검은색": ("검은색", "검은")}  # fmt: skip
NATIVE_COUNTS = {1: "한", 2: "두", 3: "세", 4: "네"}
ENDINGS = ("있습니다.", "있어요.", "보입니다.")


def describe_scene(rng: random.Random, size: int, max_count: int) -> tuple[list[dict], list[dict]]:
    """1-3 groups, each of one shape (distinct), one colour (distinct) and 1-3 copies, standing in its own column
    (왼쪽 / 가운데 / 오른쪽). Returns the ground truth (Korean names) and the shapes to draw."""
    k = rng.choice((1, 2, 2, 3))
    columns = sorted(rng.sample(range(3), k))
    kinds, colors = rng.sample(SHAPES, k), rng.sample(list(COLORS), k)
    extent, width, objects, shapes = max(6, size * 2 // 9), size // 3, [], []  # 14 px of 64: colours show
    for col, kind, color in zip(columns, kinds, colors):
        taken: list = []
        for _ in range(rng.randint(1, min(3, max_count))):
            box = _place(rng, size, extent, taken, xs=(col * width + 1, (col + 1) * width - extent - 1))
            if box is not None:
                taken.append(box)
        objects.append({"shape": SHAPE_NAMES[kind], "color": color, "count": len(taken), "position": POSITIONS[col]})
        shapes += [{"shape": kind, "box": b, "color": color} for b in taken]
    return objects, shapes


def _count_words(rng: random.Random, n: int) -> str:
    forms = [f"{n}개"] + ([f"{NATIVE_COUNTS[n]} 개"] if n in NATIVE_COUNTS else []) + (["하나"] if n == 1 else [])
    return rng.choice(forms)


def describe_text(objects: list[dict], rng: random.Random) -> str:
    """A natural Korean description of ``objects`` (ground-truth dicts: shape, color, count, position) in one of
    several templates, the word forms (빨간색/빨간, 원/동그라미, 2개/두 개/하나) drawn from ``rng``. The same ``rng``
    state on an altered scene gives the same template and forms (preference pairs differ only in the error)."""
    template = rng.randrange(6)
    parts = []
    for o in objects:
        color, shape = rng.choice(COLOR_WORDS[o["color"]]), rng.choice(SHAPE_WORDS[o["shape"]])
        parts.append({"c": color, "s": shape, "n": _count_words(rng, o["count"]), "p": o["position"]})
    end = rng.choice(ENDINGS)
    if rng.random() < 0.7:
        parts.sort(key=lambda q: POSITIONS.index(q["p"]) if q["p"] in POSITIONS else 0)
    nps = [f"{q['c']} {q['s']} {q['n']}" for q in parts]
    if template == 0:  # one sentence per group, place first
        return " ".join(f"{q['p']}에 {np}가 {end}" for q, np in zip(parts, nps))
    if template == 1:  # one sentence, groups listed with commas
        return ", ".join(f"{q['p']}에 {np}" for q, np in zip(parts, nps)) + f"가 {end}"
    if template == 2:  # what, then where
        where = ", ".join(f"{_topic(q['s'])} {q['p']}에" for q in parts)
        return f"그림에는 {_and_list(nps)}가 있습니다. {where} {end}"
    if template == 3:  # clauses joined with 있고
        clauses = [f"{q['p']}에는 {q['c']} {_subject(q['s'])} {q['n']}" for q in parts]
        return " 있고, ".join(clauses) + f" {end}"
    if template == 4:  # the total first
        total = sum(o["count"] for o in objects)
        body = " ".join(f"{np}가 {q['p']}에 {end}" for q, np in zip(parts, nps))
        return f"도형이 모두 {_count_words(rng, total)} {end} {body}"
    return "이미지 설명:\n" + "\n".join(f"- {q['p']}: {np}" for q, np in zip(parts, nps))  # a markdown list


def _and_list(items: list[str]) -> str:
    """'A', 'A와 B', 'A, B와 C' (every item ends in 개 or 하나: the particle is 와)."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + f"와 {items[-1]}"


def font_path() -> Path:
    """NanumGothic (SIL OFL) from the koreanize-matplotlib wheel."""
    import koreanize_matplotlib

    return Path(koreanize_matplotlib.__file__).parent / "fonts" / "NanumGothic.ttf"


def render(example: Example, size: int):
    from PIL import Image, ImageDraw, ImageFont

    img = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    spec = example.image or {}
    for item in spec.get("shapes", []):
        x1, y1, x2, y2 = item["box"]
        fill = COLORS[item["color"]]
        if item["shape"] == "circle":
            draw.ellipse((x1, y1, x2 - 1, y2 - 1), fill=fill)
        elif item["shape"] == "square":
            draw.rectangle((x1, y1, x2 - 1, y2 - 1), fill=fill)
        else:
            draw.polygon([((x1 + x2) / 2, y1), (x2 - 1, y2 - 1), (x1, y2 - 1)], fill=fill)
    if "text" in spec:
        font = ImageFont.truetype(str(font_path()), spec["font_size"])
        draw.text(tuple(spec["xy"]), spec["text"], fill=(0, 0, 0), font=font)
    return img


def examples(spec: SyntheticSpec, split: str) -> list[Example]:
    n = spec.train_size if split == "train" else spec.eval_size
    per_task = [n // len(spec.tasks) + (1 if k < n % len(spec.tasks) else 0) for k in range(len(spec.tasks))]
    out = [make_example(spec, split, task, i) for task, m in zip(spec.tasks, per_task) for i in range(m)]
    random.Random(f"{spec.seed}/{split}/order").shuffle(out)
    return out


def to_row(ex: Example, image_rel: str | None) -> dict:
    return {
        "id": ex.id,
        "task": ex.task,
        "prompt": [{"role": "user", "content": ex.question}],
        "completion": [{"role": "assistant", "content": ex.completion or ex.answer}],
        "answer": ex.answer,
        "images": [image_rel] if image_rel else [],
        **({"scene": json.dumps(ex.scene, ensure_ascii=False)} if ex.scene else {}),
    }


def build_synthetic(out_dir: str | Path, spec: SyntheticSpec | None = None, progress=None) -> Path:
    """Write ``train.jsonl``, ``eval.jsonl``, ``images/`` and ``meta.json`` to ``out_dir`` (skipped if present)."""

    spec = spec or SyntheticSpec()
    out_dir = Path(out_dir)
    meta = {"generator_version": GENERATOR_VERSION, **asdict(spec), "tasks": list(spec.tasks)}
    if (out_dir / "meta.json").exists() and json.loads((out_dir / "meta.json").read_text()) == meta:
        return out_dir
    for task in spec.tasks:
        if task not in ALL_TASKS:
            raise ValueError(f"unknown synthetic task {task!r}; choose from {', '.join(ALL_TASKS)}")
    with atomic_dir(out_dir) as tmp:
        (tmp / "images").mkdir()
        for split in ("train", "eval"):
            rows = []
            for ex in examples(spec, split):
                rel = None
                if ex.image is not None:
                    rel = f"images/{ex.id}.png"
                    render(ex, spec.image_size).save(tmp / rel)
                rows.append(to_row(ex, rel))
                if progress:
                    progress()
            (tmp / f"{split}.jsonl").write_text(
                "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
            )
        atomic_write_json(tmp / "meta.json", meta)
    return out_dir


def vocabulary_texts() -> list[str]:
    """The generator's questions and reference answers, for training the embedded model's tokenizer. The phrased SFT
    answers are left out on purpose: the tokenizer (and so every tiny model, and the oracle fixtures computed on them)
    stays as it was; the phrasings' words are in the Korean corpus it is trained on."""
    spec = SyntheticSpec(train_size=400, eval_size=0)
    texts = [f"{ex.question} {ex.answer}" for ex in examples(spec, "train")]
    texts += [q for qs in QUESTIONS.values() for q in qs]
    texts += list(COLORS) + list(OCR_WORDS) + [f"{n}개" for n in range(1, 20)] + [f"답: {n}" for n in range(20)]
    return texts
