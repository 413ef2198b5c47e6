"""Benchmarks (align/benchmarks/): scoring rules against hand-computed answers, every benchmark end to end on fixtures
in the published columns with the tiny models, a local judge in-process and over HTTP, lm-eval offline, the eval hook
after a stage, ``align eval --bench`` and the compare table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from align.benchmarks.caption import sbert_similarity
from align.benchmarks.choice import rotate, split_embedded_options
from align.benchmarks.judge import parse_scores_lenient
from align.benchmarks.llava_w import relative_score
from align.benchmarks.run import run_benchmarks
from align.errors import UserError
from align.io import read_jsonl
from align.recipe import validate
from rewards.text_metrics import bleu, cider_d, tokenize
from rollouts.base import Completion, Engine
from tests import bench_fixtures as fx
from tests.conftest import ROOT


def test_rotation_and_embedded_options():
    from align.benchmarks.choice import Item

    item = Item("7", "7", "q", None, {"A": "w", "B": "x", "C": "y", "D": "z"}, "B", None, None, None, False)
    r1, r3 = rotate(item, 1), rotate(item, 3)
    assert r1.options == {"A": "x", "B": "y", "C": "z", "D": "w"} and r1.answer == "A"
    assert r3.options == {"A": "z", "B": "w", "C": "x", "D": "y"} and r3.answer == "C"
    assert [rotate(item, s).options[rotate(item, s).answer] for s in range(4)] == ["x"] * 4
    stem, opts = split_embedded_options("도형은 무슨 색인가요?\nOptions: A: 빨간색, B: 파란색, C: 초록 색, D: 검은색")
    assert stem == "도형은 무슨 색인가요?" and opts == {"A": "빨간색", "B": "파란색", "C": "초록 색", "D": "검은색"}


@pytest.mark.parametrize(
    ("review", "scores"),
    [
        ("8 6\n어시스턴트 2의 답변은 짧습니다.", (8.0, 6.0)),
        ("8, 6", (8.0, 6.0)),
        ("**7 9**\n설명", (7.0, 9.0)),
        ("8점 6점", (8.0, 6.0)),
        ("10 3", (10.0, 3.0)),
        ("7.5 6.5", (7.5, 6.5)),
        ("평가:\n9 4\n이유…", (9.0, 4.0)),
        ("어시스턴트 1: 7점, 어시스턴트 2: 9점입니다.", (7.0, 9.0)),
        ("Assistant 1 score: 6\nAssistant 2 score: 2", (6.0, 2.0)),
        ("0 5", None),
        ("11 4", None),
        ("8", None),
        ("좋은 답변입니다.", None),
        ("", None),
        ("\n\n\n", None),
    ],
)
def test_judge_score_parsing(review, scores):
    assert parse_scores_lenient(review) == scores  # the lenient second figure (published rule: test_bench_judge)


def test_relative_score_is_the_ratio_of_means():
    # answers 6, 4, 9 against references 8, 8, 10: (19/3) / (26/3) × 100
    assert relative_score([(8, 6), (8, 4), (10, 9)]) == pytest.approx(19 / 26 * 100)
    assert relative_score([]) is None


# pycocoevalcap 1.2 (Cider, Bleu(4)) on these pre-tokenised strings, run once in a side venv (/work/side/pycocoevalcap)
CAPTIONS = [
    "빨간 사과 두 개가 탁자 위에 있다",
    "파란 자동차 한 대가 도로를 달린다",
    "고양이 한 마리가 소파 위에서 잠을 잔다",
    "노란 꽃 이 화분 에 피어 있다",
]
REFERENCES = [
    ["탁자 위에 빨간 사과 두 개가 놓여 있다", "빨간 사과 두 개가 탁자 위에 있다"],
    ["파란 자동차가 도로를 달리고 있다", "도로 위를 파란 차 한 대가 달린다", "파란 자동차 한 대"],
    ["소파 위에서 고양이가 자고 있다", "고양이 한 마리가 소파에서 잠을 잔다"],
    ["화분에 노란 꽃이 피어 있다", "노란 꽃 이 화분 에 피어 있다"],
]
ORACLE = {
    "cider": 4.505526933036252,
    "cider_per_image": [7.627981446002855, 2.090183432738683, 2.5798434733485487, 5.724099380054922],
    "bleu": [0.999999999962963, 0.9088932591097958, 0.8050406370007326, 0.7262949667070042],
}


def test_cider_and_bleu_match_pycocoevalcap():
    cands = [c.split() for c in CAPTIONS]
    refs = [[r.split() for r in rs] for rs in REFERENCES]
    score, per_image = cider_d(cands, refs)
    assert score == pytest.approx(ORACLE["cider"], abs=1e-9)
    assert per_image == pytest.approx(ORACLE["cider_per_image"], abs=1e-9)
    for n in (1, 2, 3, 4):  # pycocoevalcap adds 1e-15 / 1e-9 guards to each precision
        assert bleu(cands, refs, max_n=n) == pytest.approx(ORACLE["bleu"][n - 1], abs=1e-9)
    assert tokenize("빨간 사과, 두 개!") == ["빨간", "사과", "두", "개"]
    assert tokenize("빨간 사과", "char") == ["빨", "간", "사", "과"]
    assert bleu([["x", "y"]], [[["a", "b"]]]) == 0.0


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    return fx.build_all(tmp_path_factory.mktemp("bench-fixtures"))


def recipe_with(benchmarks: list[dict], **eval_extra):
    """A recipe running ``benchmarks``; answers are cut at 8 tokens unless a benchmark says otherwise (the tiny model
    never stops by itself)."""
    benchmarks = [{"max_new_tokens": 8, **b} for b in benchmarks]
    return validate({"name": "bench", "rollout": {"engine": "hf"},
                     "eval": {"max_new_tokens": 8, "batch_size": 16, **eval_extra, "benchmarks": benchmarks}})  # fmt: skip


class ColourReader(Engine):
    """A stand-in model for scoring-rule tests: reads the circle's colour from the image centre and answers with
    that option's letter in one of several Korean formats — except that it never answers D (a position bias)."""

    name = "colour-reader"

    def __init__(self, never_d: bool):
        self.never_d, self.calls = never_d, 0

    def generate(self, prompts, images, sampling):
        out = []
        for prompt, imgs in zip(prompts, images):
            rgb = imgs[0].getpixel((imgs[0].width // 2, imgs[0].height // 2))
            colour = next(c for c, v in fx.COLORS.items() if tuple(v) == rgb)
            text = prompt[-1]["content"]
            _, embedded = split_embedded_options(text.split("\n주어진")[0].split("\n한 단어")[0].split("\nAnswer")[0])
            lines = dict(ln.split(". ", 1) for ln in text.splitlines() if len(ln) > 2 and ln[1:3] == ". ")
            options = embedded or lines
            letter = next(k for k, v in options.items() if v.strip() == colour)
            if self.never_d and letter == "D":
                letter = "A"
            style = self.calls % 4
            self.calls += 1
            reply = [f"정답은 {letter}입니다", f"({letter})", f"{letter}. {options[letter]}", options[letter]][style]
            out.append([Completion(reply, [1], [0.0], "stop")])
        return out


def _share_not_d(parquet_dir, category=None):
    """Hand count: the share of questions (of a category) whose answer is not D."""
    import pyarrow.parquet as pq

    rows = [r for r in pq.read_table(next(parquet_dir.rglob("*.parquet"))).to_pylist()
            if category is None or r["category"] == category]  # fmt: skip
    return sum(r["answer"] != "D" for r in rows) / len(rows)


def test_circular_evaluation_and_published_layouts(fixtures, tiny_model, tmp_path):
    specs = [{"name": "k-mmbench", "source": str(fixtures["k-mmbench"])},  # hub parquet: rotations generated
             {"name": "k-seed", "source": str(fixtures["k-seed"])},
             {"name": "k-mmstar", "source": str(fixtures["k-mmstar"])},
             {"name": "k-dtcbench", "source": str(fixtures["k-dtcbench"])}]  # fmt: skip
    recipe = recipe_with(specs)
    perfect = run_benchmarks(tiny_model, recipe, tmp_path / "a", engine=ColourReader(never_d=False))
    for name in ("k-mmbench", "k-seed", "k-mmstar", "k-dtcbench"):
        assert perfect[f"bench/{name}/accuracy"] == 1.0 and perfect[f"bench/{name}/unparsed"] == 0, name
    assert perfect["bench/k-mmbench/rows"] == 4 * 6 and perfect["bench/k-mmbench/n"] == 6
    biased = run_benchmarks(tiny_model, recipe, tmp_path / "b", engine=ColourReader(never_d=True))
    # circular: every question has a rotation whose answer is D, so a model that never says D gets none right;
    # plain accuracy only loses the questions whose own answer is D
    assert biased["bench/k-mmbench/accuracy"] == 0.0
    assert biased["bench/k-mmbench/accuracy_vanilla"] == pytest.approx(_share_not_d(fixtures["k-mmbench"]))
    assert biased["bench/k-seed/accuracy"] == pytest.approx(_share_not_d(fixtures["k-seed"]))
    for cat in ("document", "table", "chart"):
        assert biased[f"bench/k-dtcbench/category/{cat}"] == pytest.approx(_share_not_d(fixtures["k-dtcbench"], cat))
    assert 0 < biased["bench/k-seed/accuracy"] < 1  # the fixture has answers D and not D
    rows = read_jsonl(tmp_path / "b" / "bench" / "k-mmbench.jsonl")
    assert len(rows) == 24 and {r["rotation"] for r in rows} == {0, 1, 2, 3}
    assert all(r["extracted"] != "D" for r in rows) and any(r["answer"] == "D" for r in rows)
    # VLMEvalKit's TSV holds the rotations itself (index + k·10⁶, image named by the original's index)
    tsv = run_benchmarks(tiny_model, recipe_with([{"name": "MMBench_DEV_KO", "source": str(fixtures["k-mmbench-tsv"])}]),
                         tmp_path / "c", engine=ColourReader(never_d=True))  # fmt: skip
    assert tsv["bench/k-mmbench/n"] == 4 and tsv["bench/k-mmbench/rows"] == 16
    assert tsv["bench/k-mmbench/accuracy"] == 0.0 and tsv["bench/k-mmbench/bad_rows"] == 0


def test_choice_sets_bad_rows_and_latency_on_the_tiny_vlm(fixtures, tiny_model, tmp_path):
    bad = fx.kseed_with_bad_rows(tmp_path / "bad").parent.parent
    specs = [{"name": "k-mmbench", "source": str(fixtures["k-mmbench"]), "limit": 3},
             {"name": "k-seed", "source": str(bad)},
             {"name": "k-mmstar", "source": str(fixtures["k-mmstar"])},
             {"name": "k-dtcbench", "source": str(fixtures["k-dtcbench"])},
             {"name": "latency", "limit": 2, "max_new_tokens": 6}]  # fmt: skip
    m = run_benchmarks(tiny_model, recipe_with(specs), tmp_path / "out")
    assert m["bench/k-mmbench/n"] == 3 and m["bench/k-mmbench/rows"] == 12
    assert m["bench/k-seed/n"] == 3 and m["bench/k-seed/bad_rows"] == 3
    assert m["bench/k-seed/bad/missing_image"] == 1 and m["bench/k-seed/bad/answer_outside_options"] == 1
    assert m["bench/k-seed/bad/missing_options"] == 1
    for name in ("k-mmbench", "k-seed", "k-mmstar", "k-dtcbench"):
        assert 0.0 <= m[f"bench/{name}/accuracy"] <= 1.0
        rows = read_jsonl(tmp_path / "out" / "bench" / f"{name}.jsonl")
        assert len(rows) == m[f"bench/{name}/rows"] and all("prediction" in r for r in rows)
        assert m[f"bench/{name}/unparsed"] == sum(r["how"] == "none" for r in rows)
    prompt = read_jsonl(tmp_path / "out" / "bench" / "k-seed.jsonl")[0]["prompt"]
    assert prompt.endswith("주어진 선택지 중 해당 옵션의 문자로 바로 답하세요.") and "\nA. " in prompt
    assert m["bench/latency/n"] == 2 and m["bench/latency/ttft_ms"] > 0 and m["bench/latency/tokens_per_s"] > 0
    lat = read_jsonl(tmp_path / "out" / "bench" / "latency.jsonl")
    assert len(lat) == 2 and all(1 <= r["tokens"] <= 6 for r in lat)


def test_caption_benchmark_with_a_local_sentence_model(fixtures, tiny_model, tmp_path):
    import numpy as np
    import torch
    from transformers import AutoModel, AutoTokenizer

    st = fx.tiny_sbert(tmp_path / "sbert")
    # the similarity against mean-pooled BERT embeddings computed by hand
    bert, tok = (
        AutoModel.from_pretrained(tmp_path / "sbert" / "bert"),
        AutoTokenizer.from_pretrained(tmp_path / "sbert" / "bert"),
    )

    def embed(text):
        enc = tok(text, return_tensors="pt")
        with torch.no_grad():
            h = bert(**enc).last_hidden_state[0]
        v = h.mean(0).numpy()
        return v / np.linalg.norm(v)

    preds, refs = ["빨간색 원", "파란색 원이 있다"], [["빨간색 원", "흰 바탕에 빨간색 원이 있다"], ["초록색 원"]]
    want = [float(np.mean([embed(p) @ embed(r) for r in rs])) for p, rs in zip(preds, refs)]
    assert sbert_similarity(str(st), preds, refs) == pytest.approx(want, abs=1e-5)
    assert sbert_similarity(str(st), ["노란색 원"], [["노란색 원"]]) == pytest.approx([1.0], abs=1e-5)
    m = run_benchmarks(tiny_model, recipe_with([{"name": "caption", "source": str(fixtures["caption"]), "sbert": str(st)}]),
                       tmp_path / "out")  # fmt: skip
    rows = read_jsonl(tmp_path / "out" / "bench" / "caption.jsonl")
    assert m["bench/caption/n"] == 4 and len(rows) == 4
    want_cider, _ = cider_d(
        [tokenize(r["prediction"]) for r in rows], [[tokenize(x) for x in r["references"]] for r in rows]
    )
    assert m["bench/caption/cider"] == pytest.approx(want_cider)
    assert m["bench/caption/sbert"] == pytest.approx(np.mean([r["sbert"] for r in rows]))
    with pytest.raises(UserError, match="snunlp/KR-SBERT"):
        sbert_similarity("snunlp/KR-SBERT-V40K-klueNLI-augSTS", ["a"], [["a"]])


@pytest.fixture(scope="module")
def judge_dir(tmp_path_factory):
    return fx.tiny_judge(tmp_path_factory.mktemp("judge") / "model")


def test_llava_w_with_an_in_process_judge_that_writes_no_scores(fixtures, tiny_model, tmp_path):
    """The judge as a model directory run by the rollout engine; the untrained tiny model writes no scores, so every
    row is counted as unparsed and none is guessed."""
    spec = {"name": "k-llava-w", "source": str(fixtures["k-llava-w"]), "max_new_tokens": 8,
            "judge": {"model": "tiny-korean-lm", "max_new_tokens": 8, "temperature": 0.0}}  # fmt: skip
    m = run_benchmarks(tiny_model, recipe_with([spec]), tmp_path)
    assert m["bench/k-llava-w/n"] == 3 and m["bench/k-llava-w/unparsed_judge"] == 3
    # every reply counts as (-1, -1), as published; a relative score of -1 / -1 is not reported
    assert m["bench/k-llava-w/judged"] == 0 and "bench/k-llava-w/relative_score" not in m
    rows = read_jsonl(tmp_path / "bench" / "k-llava-w.jsonl")
    assert len(rows) == 3 and all(r["answer_score"] == -1 and r["judge"].endswith("tiny-korean-lm") for r in rows)
    assert all(not r["parsed"] and r["rule"].startswith("built-in") for r in rows)


def _start_server(model_dir):
    proc = subprocess.Popen([sys.executable, "-m", "align.benchmarks.judge_server", str(model_dir), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    deadline = time.time() + 120
    while time.time() < deadline:
        line = proc.stdout.readline()
        if line.startswith("serving "):
            return proc, line.split(" on ")[1].strip()
        if proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError(f"judge server did not start: {proc.stdout.read()[-2000:]}")


def test_llava_w_with_a_judge_server_over_http(fixtures, tiny_model, judge_dir, tmp_path):
    """A real HTTP server process answers from the tiny judge model through the rollout engine."""
    from align.benchmarks.judge import judge_prompt
    from align.recipe import RolloutSpec
    from rollouts import Sampling, make_engine

    proc, url = _start_server(judge_dir)
    try:
        spec = {"name": "k-llava-w", "source": str(fixtures["k-llava-w"]), "max_new_tokens": 8,
                "judge": {"url": url, "max_new_tokens": 8, "concurrency": 2, "temperature": 0.0}}  # fmt: skip
        m = run_benchmarks(tiny_model, recipe_with([spec]), tmp_path / "a")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    # the tiny judge was taught to give the reference 8 and the answer 6: 6 / 8 = 75 %, in every category
    assert m["bench/k-llava-w/judged"] == 3 and m["bench/k-llava-w/unparsed_judge"] == 0
    assert m["bench/k-llava-w/relative_score"] == pytest.approx(75.0)
    assert m["bench/k-llava-w/model_score"] == pytest.approx(60.0)
    for category in ("conv", "detail", "complex"):
        assert m[f"bench/k-llava-w/relative_score/{category}"] == pytest.approx(75.0)
    rows = read_jsonl(tmp_path / "a" / "bench" / "k-llava-w.jsonl")
    assert rows[0]["judge"] == "model"  # the name the server reported on /v1/models
    assert all(r["reference_score"] == 8.0 and r["answer_score"] == 6.0 for r in rows)
    # the server's replies are the judge model's own greedy answers to the same prompts
    engine = make_engine(RolloutSpec(engine="hf"), str(judge_dir))
    local = engine.generate([judge_prompt(r["question"], f"흰 바탕에 {c} 원이 하나 있다.", r["reference"], r["prediction"])
                             for r, c in zip(rows, fx.COLOR_NAMES)], None, Sampling(temperature=0.0, max_new_tokens=8))  # fmt: skip
    assert [r["review"] for r in rows] == [o[0].text for o in local]
    with pytest.raises(UserError, match=r"127\.0\.0\.1:9.*unreachable") as err:
        run_benchmarks(tiny_model, recipe_with([{**spec, "judge": {"url": "http://127.0.0.1:9/v1"}}]), tmp_path / "b")
    assert "vllm serve" in err.value.hint and "judge.model" in err.value.hint


def test_korean_text_benchmarks_through_lm_eval_offline(fixtures, tiny_model, tmp_path):
    """KMMLU, HAE-RAE, CLIcK, KoBEST as lm-eval defines them, on local snapshots, scored on the VLM's text part."""
    import torch

    from align.benchmarks.text_tasks import load_lm

    specs = [{"name": "kmmlu", "source": str(fixtures["kmmlu"]), "tasks": ["kmmlu_accounting", "kmmlu_korean_history"]},
             {"name": "haerae", "source": str(fixtures["haerae"])},
             {"name": "click", "source": str(fixtures["click"])},
             {"name": "kobest", "source": str(fixtures["kobest"]), "limit": 1}]  # fmt: skip
    m = run_benchmarks(tiny_model, recipe_with(specs), tmp_path)
    expected_rows = {"kmmlu": 6, "haerae": 10, "click": 11, "kobest": 5}
    for name, n in expected_rows.items():
        rows = read_jsonl(tmp_path / "bench" / f"{name}.jsonl")
        assert m[f"bench/{name}/n"] == n == len(rows), name
        # lm-eval's accuracy is the share of rows whose most likely choice is the target
        assert m[f"bench/{name}/acc"] == pytest.approx(sum(r["acc"] for r in rows) / n), name
        assert all(r["acc"] == float(r["prediction"] == r["target"]) for r in rows if isinstance(r["target"], int))
    assert "bench/kmmlu/task/kmmlu_accounting/acc" in m and "bench/kobest/task/kobest_copa/acc" in m
    # the log-likelihood lm-eval recorded is the VLM's, run without an image
    row = next(r for r in read_jsonl(tmp_path / "bench" / "kmmlu.jsonl"))
    lm = load_lm(tiny_model)
    ids = lm.tok_encode(row["prompt"])
    cont = lm.tok_encode(row["prompt"] + " A")[len(ids) :]
    with torch.no_grad():
        logits = lm.model(input_ids=torch.tensor([ids + cont])).logits[0].log_softmax(-1)
    ll = sum(logits[len(ids) - 1 + i, t].item() for i, t in enumerate(cont))
    assert row["scores"][0] == pytest.approx(ll, abs=1e-3)


def test_unreachable_sources_name_the_source_and_the_fix(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # as on these machines: the hub is out of reach
    with pytest.raises(UserError, match="NCSOFT/K-MMBench") as err:
        run_benchmarks(tiny_model, recipe_with([{"name": "k-mmbench"}]), tmp_path)
    assert "hf download NCSOFT/K-MMBench" in err.value.hint and "--source" in err.value.hint
    with pytest.raises(UserError, match="HAERAE-HUB/KMMLU") as err:
        run_benchmarks(tiny_model, recipe_with([{"name": "kmmlu", "tasks": ["kmmlu_accounting"]}]), tmp_path)
    assert "source: DIR" in err.value.hint
    with pytest.raises(UserError, match="does not exist"):
        run_benchmarks(tiny_model, recipe_with([{"name": "k-seed", "source": "./missing/K-SEED.tsv"}]), tmp_path)


def test_regression_flags_and_benchmark_table():
    from align.benchmarks.compare_bench import regressions, table_rows
    from align.compare import Checkpoint

    def cp(label, acc, se, tps):
        return Checkpoint(label, None, {"accuracy": 0.5, "bench/k-seed/accuracy": acc, "bench/k-seed/accuracy_stderr": se,
                                        "bench/k-seed/category/x": acc, "bench/latency/tokens_per_s": tps})  # fmt: skip

    cps = [cp("base", 0.50, 0.05, 100.0), cp("sft", 0.40, 0.05, 90.0), cp("rft", 0.38, 0.05, 95.0)]
    flags = regressions(cps)
    assert [(r["benchmark"], r["from"], r["to"]) for r in flags] == [("k-seed", "base", "sft")]  # 0.10 > 0.05; 0.02 not
    rows = table_rows(cps)
    assert rows[0][:2] == ("k-seed", "accuracy") and rows[0][2] == ["0.500 ±0.050", "0.400 ±0.050", "0.380 ±0.050"]
    assert rows[0][3] == [False, True, False]
    assert not any(r[1].startswith("category/") for r in rows)  # categories only in compare.md
    assert any(r[1] == "category/x" for r in table_rows(cps, detail=True))


def test_stage_eval_runs_benchmarks_and_compare_shows_them(fixtures, tmp_path, capsys):
    from align.cli import main
    from align.pipeline import run_pipeline

    text = f"""
name: bench-small
output_dir: {tmp_path / "runs"}
rollout: {{engine: hf}}
data: {{train_size: 16, eval_size: 4, seed: 3}}
eval:
  max_new_tokens: 8
  samples: 1
  benchmarks:
    - {{name: k-seed, source: {fixtures["k-seed"]}}}
    - {{name: k-dtcbench, source: {fixtures["k-dtcbench"]}, limit: 3}}
stages:
  - type: sft
    args: {{learning_rate: 1.0e-3, max_steps: 2, per_device_train_batch_size: 8, logging_steps: 1}}
"""
    (tmp_path / "r.yaml").write_text(text)
    from align.recipe import load_recipe

    run = run_pipeline(load_recipe(tmp_path / "r.yaml"))
    for stage in ("base", "sft"):
        ev = json.loads((run.path / stage / "eval.json").read_text())
        assert ev["bench/k-seed/n"] == 5 and ev["bench/k-dtcbench/n"] == 3 and "accuracy" in ev
        assert (run.path / stage / "bench" / "k-seed.jsonl").exists()
    capsys.readouterr()
    assert main(["compare", str(run.path), "--out", str(tmp_path / "cmp")]) == 0
    out = capsys.readouterr().out
    assert "benchmarks" in out and "k-seed" in out and "k-dtcbench" in out
    md = (tmp_path / "cmp" / "compare.md").read_text()
    assert "## Benchmarks" in md and "| k-seed | accuracy |" in md
    assert (tmp_path / "cmp" / "compare_bench_choice.png").exists()
    # align eval --bench on any checkpoint merges into its eval.json
    assert main(["eval", str(run.path / "sft" / "model"), "rollout.engine=hf", "--bench", "k-mmstar", "--source",
                 str(fixtures["k-mmstar"]), "--limit", "2", "--out", str(run.path / "sft")]) == 0  # fmt: skip
    ev = json.loads((run.path / "sft" / "eval.json").read_text())
    assert ev["bench/k-mmstar/n"] == 2 and ev["bench/k-seed/n"] == 5 and "accuracy" in ev
    assert main(["eval", "tiny-korean-vlm", "--bench", "k-llava-w", "--out", str(tmp_path / "x")]) == 2


def test_quickstart_recipe_runs_no_benchmarks():
    from align.recipe import load_recipe

    assert load_recipe(ROOT / "recipes" / "quickstart.yaml").eval.benchmarks == []


def test_local_folders_are_read_afresh(tmp_path):
    """datasets caches a local folder by its path; a copy replaced in place must not give the old rows."""
    from align.benchmarks.sources import load_rows

    folder = fx.kseed_parquet(tmp_path / "K-SEED", n=3).parent.parent
    assert len(load_rows(str(folder), "test", "k-seed")[0]) == 3
    fx.kseed_parquet(tmp_path / "K-SEED", n=5)
    assert len(load_rows(str(folder), "test", "k-seed")[0]) == 5
