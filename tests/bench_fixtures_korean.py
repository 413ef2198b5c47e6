"""Tiny fixtures of the issue-32 Korean benchmarks, each in its published layout (no published data):

* KOFFVQA — ``KOFFVQA.tsv``: index, question, answer (the grading criteria), category, image (base64 JPEG/PNG);
* K-Viscuit — the GitHub copy: ``dataset/annotations.jsonl`` (question, options, answer as a 0-based index,
  category, id_, question_type, image_url, image_path) + ``dataset/images/<image_path>``;
* KRETA — hub parquet: id, question, A-D, answer (letter), category, image_type, topic_difficulty, image;
* KMMLU-Redux / KMMLU-Pro — jsonl: question, options (list), solution (1-based), category / license_name, subject;
* KoBALT-700 — jsonl: ID, Question (options inside as ``A: …`` lines, up to J), Answer (letter), Class, Subclass;
* KoNET — a checkout after ``generate_KoNET()``: ``data/images_problem/<id>.png`` + ``src/utils/answers.json``.

Every question carries a unique text (or, for KoNET, a unique image colour) so that scripted answers can be keyed to
it; the tests work the expected scores out by hand from those answers.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.bench_fixtures import COLOR_NAMES, _b64, _write_parquet, shape_image

KOFFVQA = [  # question, criteria, category
    ("사진 속 도형은 무슨 색인가요?", "- 도형의 색을 빨간색이라고 답하면 10점", "객체 속성"),
    ("도형의 모양을 설명해 주세요.", "- 원이라고 답하면 6점\n- 색(파란색)까지 말하면 4점", "객체 속성"),
    ("간판에 적힌 글자를 읽어 주세요.", "- '영업중'을 정확히 읽으면 10점", "텍스트 읽기"),
    ("표지판의 문구는 무엇인가요?", "- '출입금지'를 정확히 읽으면 10점", "텍스트 읽기"),
]
KVISCUIT = [  # question, options, answer index, category, question_type
    ("What is the name of this food?", ["Kimchi", "Salsa", "Pickled radish", "Tofu"], 0, "Food", 1),
    ("What is this dish usually served with?", ["Ketchup", "Rice", "Cream", "Jam"], 1, "Food", 2),
    ("What does the red colour mainly come from?", ["Beet", "Tomato", "Red pepper powder", "Paprika"], 2, "Food", 2),
    ("What is the name of this garment?", ["Hanbok", "Kimono", "Qipao", "Sari"], 0, "Clothes", 1),
    ("On which holiday is this worn most?", ["Halloween", "Seollal", "Easter", "Diwali"], 1, "Clothes", 2),
]
KRETA = [  # question, options A-D, answer, category, image_type, topic_difficulty
    ("안내문에 적힌 영업 시작 시각은?", ["9시", "10시", "11시", "12시"], "B", "Retail and Commerce", "sign", "System1"),
    ("영수증의 합계 금액은?", ["1,000원", "2,000원", "3,000원", "4,000원"], "C", "Economics and Finance", "receipt",
     "System1"),
    ("표에서 가장 많이 팔린 상품의 판매량과 두 번째 상품의 차이는?", ["5", "10", "15", "20"], "D",
     "Marketing and Advertising", "chart", "System2"),
    ("공문에 따르면 신청 마감일 다음 날은?", ["3월 2일", "3월 3일", "3월 4일", "3월 5일"], "A",
     "Public and Administration", "document", "System2"),
]  # fmt: skip
KMMLU_REDUX = [  # question, options, solution (1-based), category
    ("르네상스 시대 바로크식 정원의 특징과 가장 거리가 먼 것은?", ["축선", "분수", "격자울타리", "캐스케이드"], 3,
     "조경기사"),
    ("콘크리트의 압축강도 시험 재령은 보통 며칠인가?", ["7일", "14일", "21일", "28일"], 4, "건축기사"),
    ("전기회로에서 저항의 단위는?", ["볼트", "암페어", "옴", "와트"], 3, "전기기사"),
]  # fmt: skip
KMMLU_PRO = [  # question, options, solution (1-based, text as published), license_name, subject
    ("민법상 미성년자의 법률행위에 필요한 것은?", ["법원 허가", "등기", "법정대리인의 동의", "공증"], "3", "변호사",
     "민법"),
    ("형법상 정당방위의 요건이 아닌 것은?", ["현재의 부당한 침해", "상당한 이유", "방위 의사", "사후 승인"], "4",
     "변호사", "형법"),
    ("부가가치세 일반과세자의 기본 세율은?", ["10%", "5%", "3%", "0%"], "1", "세무사", "세법학"),
]  # fmt: skip
KOBALT = [  # stem, ten options, answer letter, class, subclass
    ("다음 중 문법적으로 가장 자연스러운 문장은?", [f"문장 {i}" for i in range(10)], "J", "Syntax", "Agreement"),
    ("다음 중 피동 표현이 쓰인 문장은?", [f"예문 {i}" for i in range(10)], "B", "Syntax", "Voice"),
    ("다음 중 '먹다'가 비유적으로 쓰인 문장은?", [f"용례 {i}" for i in range(10)], "C", "Semantics", "Polysemy"),
]
KONET = [  # problem id, reference answer (KoNET answers.json holds numbers: the option, or a short answer)
    ("koeged_1st_Mathematics_01", 2),
    ("koeged_1st_Mathematics_02", 4),
    ("kocsat_1st_MathematicsCalculus_23", 3),  # elective section: answers.json index 23 - 22 - 1 = 0
    ("kocsat_1st_English_01", 1),  # listening: counted correct without being asked
    ("komged_1st_Science_01", 1),
]


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def koffvqa_tsv(path: Path) -> Path:
    """The criteria span several lines: a quoted TSV cell, as pandas writes and reads it."""
    import pandas as pd

    rows = [{"index": i, "question": q, "answer": criteria, "category": cat, "image": _b64(shape_image(COLOR_NAMES[i]))}
            for i, (q, criteria, cat) in enumerate(KOFFVQA)]  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path, sep="\t", index=False)
    return path


def kviscuit_github(root: Path) -> Path:
    rows = []
    for i, (question, options, answer, category, qtype) in enumerate(KVISCUIT):
        (root / "images").mkdir(parents=True, exist_ok=True)
        shape_image(COLOR_NAMES[i]).save(root / "images" / f"{i}.png")
        rows.append({"question": question, "options": options, "answer": answer, "category": category,
                     "id_": f"{category}.{i}.{qtype - 1}", "question_type": qtype,
                     "image_url": f"https://example.org/{i}.png", "image_path": f"{i}.png"})  # fmt: skip
    return _jsonl(root / "annotations.jsonl", rows)


def kreta_parquet(root: Path) -> Path:
    rows = [{"id": f"kreta_{i}", "question": q, **dict(zip("ABCD", opts)), "answer": ans, "category": cat,
             "image_type": itype, "topic_difficulty": level, "image": shape_image(COLOR_NAMES[i])}
            for i, (q, opts, ans, cat, itype, level) in enumerate(KRETA)]  # fmt: skip
    return _write_parquet(rows, root / "data" / "test-00000-of-00001.parquet").parent.parent


def kmmlu_x_jsonl(path: Path, items, columns: tuple[str, ...]) -> Path:
    rows = [
        {"question": q, "options": opts, "solution": sol, **dict(zip(columns, rest))} for q, opts, sol, *rest in items
    ]
    return _jsonl(path, rows)


def kobalt_jsonl(path: Path) -> Path:
    rows = [{"ID": i + 1, "Question": stem + "\n" + "\n".join(f"{'ABCDEFGHIJ'[j]}: {o}" for j, o in enumerate(opts)),
             "Answer": ans, "Class": cls, "Subclass": sub}
            for i, (stem, opts, ans, cls, sub) in enumerate(KOBALT)]  # fmt: skip
    return _jsonl(path, rows)


def konet_checkout(root: Path) -> Path:
    answers: dict[str, list] = {}
    for i, (pid, answer) in enumerate(KONET):
        (root / "data" / "images_problem").mkdir(parents=True, exist_ok=True)
        shape_image(COLOR_NAMES[i]).save(root / "data" / "images_problem" / f"{pid}.png")
        answers.setdefault(pid.rpartition("_")[0], []).append(answer)
    (root / "src" / "utils").mkdir(parents=True, exist_ok=True)
    (root / "src" / "utils" / "answers.json").write_text(json.dumps(answers, ensure_ascii=False), encoding="utf-8")
    return root


def build_all(root: Path) -> dict[str, Path]:
    """Every fixture under ``root``; benchmark name -> source."""
    return {
        "koffvqa": koffvqa_tsv(root / "KOFFVQA" / "KOFFVQA.tsv"),
        "k-viscuit": kviscuit_github(root / "k-viscuit" / "dataset"),
        "kreta": kreta_parquet(root / "KRETA"),
        "kmmlu-redux": kmmlu_x_jsonl(root / "KMMLU-Redux.jsonl", KMMLU_REDUX, ("category",)),
        "kmmlu-pro": kmmlu_x_jsonl(root / "KMMLU-Pro.jsonl", KMMLU_PRO, ("license_name", "subject")),
        "kobalt": kobalt_jsonl(root / "KoBALT-700.jsonl"),
        "konet": konet_checkout(root / "KoNET"),
    }
