"""The benchmarks the eval hook knows: name, family, where the data lives on the hub, licence, main metric.

Families: ``choice`` (multiple-choice VLM sets, ``choice.py``), ``judged`` (open-ended answers scored by a judge
model, ``llava_w.py``), ``text`` (lm-eval's Korean text tasks, ``text_tasks.py``), ``caption`` (``caption.py``),
``latency`` (``latency.py``). Data is never shipped: ``source`` is a hub id loaded with ``datasets`` or a local copy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from align.errors import UserError, did_you_mean


@dataclass(frozen=True)
class BenchInfo:
    name: str
    family: str  # choice | judged | text | caption | latency | mcq | text-gen
    source: str | None  # default hub id (None: the recipe must name a source)
    split: str | None  # default split of the hub dataset
    license: str
    main: str  # metric key under bench/<name>/ that compare ranks and flags
    higher_is_better: bool = True
    aliases: tuple[str, ...] = ()  # lmms-eval and VLMEvalKit names
    options: dict = field(default_factory=dict)  # family-specific defaults (prompt, circular, lm-eval task, …)


NCSOFT = "CC-BY-NC-4.0 (NCSOFT; non-commercial, never shipped here)"

# Prompt suffixes as lmms-eval's Korean task files use them (mmbench_ko_dev, seedbench_ko, dtcbench since lmms-eval
# PR #759, 2025-07; mmstar_ko). Answer budgets: K-LLaVA-W as llava-in-the-wild_ko.yaml; choices short (docs).
DIRECT_LETTER_KO = "주어진 선택지 중 해당 옵션의 문자로 바로 답하세요."
DIRECT_LETTER_EN = "Answer with the option's letter from the given choices directly"
CHOICE_BUDGET = {"max_new_tokens": 64, "budget_source": "a letter or a sentence; raise it for reasoning models"}
OPEN_BUDGET = {"max_new_tokens": 4096, "budget_source": "lmms-eval's llava_in_the_wild_ko"}

BENCHMARKS: dict[str, BenchInfo] = {
    b.name: b
    for b in (
        BenchInfo("k-mmbench", "choice", "NCSOFT/K-MMBench", "dev", NCSOFT, "accuracy",
                  aliases=("mmbench_ko_dev", "MMBench_DEV_KO"),
                  options={"layout": "mmbench", "circular": True, "suffix": DIRECT_LETTER_KO, **CHOICE_BUDGET}),
        BenchInfo("k-seed", "choice", "NCSOFT/K-SEED", "test", NCSOFT, "accuracy",
                  aliases=("seedbench_ko", "SEEDBench_IMG_KO"),
                  options={"layout": "seed", "circular": False, "suffix": DIRECT_LETTER_KO, **CHOICE_BUDGET}),
        BenchInfo("k-mmstar", "choice", "NCSOFT/K-MMStar", "val", NCSOFT, "accuracy",
                  aliases=("mmstar_ko", "MMStar_KO"),
                  options={"layout": "mmstar", "circular": False, "suffix": DIRECT_LETTER_EN, **CHOICE_BUDGET}),
        BenchInfo("k-dtcbench", "choice", "NCSOFT/K-DTCBench", "test", NCSOFT, "accuracy",
                  aliases=("dtcbench", "K-DTCBench"),
                  options={"layout": "dtc", "circular": False, "suffix": DIRECT_LETTER_KO, **CHOICE_BUDGET}),
        BenchInfo("k-llava-w", "judged", "NCSOFT/K-LLaVA-W", "test", NCSOFT, "relative_score",
                  aliases=("llava_in_the_wild_ko", "LLaVABench_KO"), options=OPEN_BUDGET),
        BenchInfo("kmmlu", "text", "HAERAE-HUB/KMMLU", None, "CC-BY-ND-4.0 (HAERAE)", "acc_macro",
                  options={"task": "kmmlu", "num_fewshot": 5}),  # 5-shot, mean over subjects: docs/benchmarks.md
        BenchInfo("haerae", "text", "HAERAE-HUB/HAE_RAE_BENCH", None, "see the dataset card (HAERAE-HUB; v1.1 is CC-BY-NC-ND-4.0)", "acc",
                  options={"task": "haerae"}),
        BenchInfo("click", "text", "EunsuKim/CLIcK", None, "see the dataset card (EunsuKim/CLIcK)", "acc",
                  options={"task": "click"}),
        BenchInfo("kobest", "text", "skt/kobest_v1", None, "see the dataset card (skt/kobest_v1)", "acc",
                  options={"task": "kobest"}),
        BenchInfo("caption", "caption", None, None, "your data's licence", "cider",
                  options={"prompt": "이미지를 한 문장으로 설명해 주세요.",
                           "sbert": "snunlp/KR-SBERT-V40K-klueNLI-augSTS"}),
        BenchInfo("latency", "latency", None, None, "prompts built in (no data)", "tokens_per_s"),
    )
}  # fmt: skip

# Issue 32: the Korean sets that ship only their own evaluation code (korean_mc.py, koffvqa.py, konet.py).
LETTER_DIRECT_EN = "Answer with the option's letter from the given choices directly."  # K-Viscuit's run_vqa.py
KRETA_DEFAULT = ("Please select the correct answer from the options above. The last line of your response should be "
                 "of the following format: 'Answer: LETTER' (without quotes) where LETTER is one of options.")  # fmt: skip
TEXT_MC_KO = "위 문제를 풀고, 마지막 줄에 '정답: X' 형식으로 답하세요. X는 선택지의 알파벳 하나입니다."  # ours
# KoBALT-700's evaluation_protocol.md ("use this prompt verbatim"; line breaks as in its human-readable version)
KOBALT_SYSTEM = "당신은 문제를 해결하는 전문가입니다."
KOBALT_USER = (
    "다음 문제에 대해서 충분히 생각하고 추론하여, 10개의 보기(A, B, C, D, E, F, G, H, I, J) 중 정답을 고르세요.\n\n"
    '{question}\n\n답변은 반드시 다음 형식을 엄격히 지켜야 합니다: "정답은 [정답 보기]입니다." 로 끝나야 하고,\n'
    "[정답 보기]는 A, B, C, D, E, F, G, H, I, J 중 하나여야 합니다.\n\n정답: 문제를 풀기 위해, 한 번 천천히 생각해봅시다."
)
EXAONE_NC_ND = "CC-BY-NC-ND-4.0 (LG AI Research; gated on the hub, non-commercial, never shipped here)"
BENCHMARKS.update({
    b.name: b
    for b in (
        BenchInfo("koffvqa", "judged", "maum-ai/KOFFVQA_Data", None, "see the dataset card (maum-ai/KOFFVQA_Data)",
                  "score", aliases=("KOFFVQA",)),
        BenchInfo("konet", "judged", None, None, "AGPL-3.0 code (naver-ai/KoNET); exam papers (c) KICE, research use",
                  "accuracy", aliases=("KoNET",)),
        BenchInfo("k-viscuit", "mcq", "ddehun/k-viscuit", "test", "CC-BY-4.0 (dataset card)", "accuracy",
                  aliases=("kviscuit", "K-Viscuit"),
                  options={"reader": "kviscuit", "layout": "kviscuit", "rule": "bare", "image": True,
                           "instruction": LETTER_DIRECT_EN}),
        BenchInfo("kreta", "mcq", "tabtoyou/KRETA", "test", "see the dataset card (tabtoyou/KRETA)", "accuracy",
                  aliases=("kotextvqa", "KRETA"),
                  options={"reader": "kreta", "layout": "kreta", "rule": "answer_line", "image": True,
                           "instruction": KRETA_DEFAULT}),
        BenchInfo("kmmlu-redux", "text-gen", "LGAI-EXAONE/KMMLU-Redux", "test", EXAONE_NC_ND, "accuracy",
                  aliases=("kmmlu_redux",),
                  options={"reader": "kmmlu_x", "layout": "text", "rule": "answer_ko", "instruction": TEXT_MC_KO}),
        BenchInfo("kmmlu-pro", "text-gen", "LGAI-EXAONE/KMMLU-Pro", "test", EXAONE_NC_ND, "accuracy",
                  aliases=("kmmlu_pro",),
                  options={"reader": "kmmlu_x", "layout": "text", "rule": "answer_ko", "instruction": TEXT_MC_KO,
                           "licence_pass": True}),
        BenchInfo("kobalt", "text-gen", "snunlp/KoBALT-700", "raw", "CC-BY-NC-4.0 (snunlp/KoBALT-700)", "accuracy",
                  aliases=("kobalt-700", "KoBALT"),
                  options={"reader": "kobalt", "layout": "template", "rule": "answer_ko", "instruction": KOBALT_USER,
                           "system": KOBALT_SYSTEM}),
    )
})  # fmt: skip

ALIASES = {alias.lower(): b.name for b in BENCHMARKS.values() for alias in b.aliases}


def lookup(name: str) -> BenchInfo:
    """A benchmark by its name or one of its lmms-eval / VLMEvalKit names (any case)."""
    key = name.lower()
    key = ALIASES.get(key, key)
    if key in BENCHMARKS:
        return BENCHMARKS[key]
    raise UserError(f"unknown benchmark '{name}'", did_you_mean(name, [*BENCHMARKS, *ALIASES]))
