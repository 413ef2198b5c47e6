"""K-LLaVA-W as published (lmms-eval ``llava_in_the_wild_ko``, VLMEvalKit ``LLaVABench_KO``): the judge's reply
parsing and failed-reply rule, the prompt layout and rule file, the judge's settings on the wire, the answer budget,
and a conformance run with scripted answers and scripted judge replies scored by hand."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from align.benchmarks import llava_w
from align.benchmarks.judge import FAILED, PUBLISHED_SYSTEM, URLJudge, judge_prompt, load_rules, parse_scores
from align.benchmarks.run import run_benchmarks
from align.errors import UserError
from align.io import read_jsonl
from align.recipe import validate
from align.spec import JudgeSpec
from rollouts.base import Completion, Engine
from tests import bench_fixtures as fx


@pytest.mark.parametrize(
    ("review", "scores"),
    [
        # the published parser: first line of the stripped reply, commas as spaces, split on single spaces, two floats
        ("8 9\n유용성: 어시스턴트 2의 답변이 더 자세합니다.", (8.0, 9.0)),  # the rule file's own example, `8 9`
        ("  7 6  \n설명", (7.0, 6.0)),
        ("8,6", (8.0, 6.0)),
        ("7.5 6.5", (7.5, 6.5)),
        ("10 3", (10.0, 3.0)),
        # what real judges also write, and the published parser does not read: (-1, -1)
        ("8, 6", FAILED),  # the comma becomes a space: three parts
        ("**8 9**\n설명", FAILED),
        ("8점 6점", FAILED),
        ("점수: 8 6", FAILED),
        ("어시스턴트 1: 7점, 어시스턴트 2: 9점입니다.", FAILED),
        ("평가:\n9 4", FAILED),
        ("", FAILED),
    ],
)
def test_published_score_parsing(review, scores):
    assert parse_scores(review) == scores


def _rule_file(tmp_path, categories=("conv", "detail", "complex")):
    """A rule file in the published form (lmms-eval rule_ko.json: llava_bench_<category> -> role, prompt), with
    stand-in rule texts."""
    path = tmp_path / "rule_ko.json"
    path.write_text(json.dumps({f"llava_bench_{c}": {"role": "어시스턴트", "prompt": f"RULE-{c}"} for c in categories},
                               ensure_ascii=False))  # fmt: skip
    return path


def test_prompt_layout_and_rule_file(tmp_path):
    rules, source = load_rules(_rule_file(tmp_path))
    messages = judge_prompt(
        "질문?", "캡션 한 줄\n캡션 두 줄", "참조 답", "모델 답", "detail", rules["llava_bench_detail"]
    )
    assert messages[0] == {"role": "system", "content": PUBLISHED_SYSTEM}
    assert messages[1]["content"] == (
        "[설명]\n캡션 한 줄\n캡션 두 줄\n\n[질문]\n질문?\n\n[어시스턴트 1]\n참조 답\n\n[어시스턴트 1 끝]\n\n"
        "[어시스턴트 2]\n모델 답\n\n[어시스턴트 2 끝]\n\n[System]\nRULE-detail\n\n"
    )
    with pytest.raises(UserError, match="does not exist") as err:
        load_rules(tmp_path / "missing.json")
    assert "rule_ko.json" in err.value.hint
    (tmp_path / "bad.json").write_text('{"llava_bench_conv": {"role": "x"}}')
    with pytest.raises(UserError, match="llava_bench_conv has no 'prompt'"):
        load_rules(tmp_path / "bad.json")
    assert source.endswith("rule_ko.json")


def test_url_judge_sends_the_published_settings():
    """A stand-in OpenAI-compatible server records what the judge sends."""
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def _reply(self, body):
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            self._reply({"data": [{"id": "judge"}]})

        def do_POST(self):
            seen.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self._reply({"choices": [{"message": {"content": "8 6\n이유"}}]})

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        judge = URLJudge(JudgeSpec(url=f"http://127.0.0.1:{server.server_port}"))
        replies = judge([judge_prompt("q", "c", "r", "a", "conv")])
    finally:
        server.shutdown()
    assert replies == ["8 6\n이유"]
    assert seen[0]["temperature"] == 0.2 and seen[0]["max_tokens"] == 1024 and seen[0]["model"] == "judge"
    assert seen[0]["messages"][0] == {"role": "system", "content": PUBLISHED_SYSTEM}


class ScriptedVLM(Engine):
    """Answers each question with a fixed reply and records the answer budget it was given."""

    name = "scripted"

    def __init__(self, replies: dict[str, str]):
        self.replies, self.budgets = replies, []

    def generate(self, prompts, images, sampling):
        self.budgets.append(sampling.max_new_tokens)
        return [[Completion(self.replies[p[-1]["content"]], [1], [0.0], "stop")] for p in prompts]


class ScriptedJudge:
    """Replies to each review by the model answer it reads; records the conversations."""

    name = "scripted-judge"

    def __init__(self, verdicts: dict[str, str]):
        self.verdicts, self.seen = verdicts, []

    def __call__(self, conversations):
        self.seen += conversations
        return [next(v for a, v in self.verdicts.items() if f"[어시스턴트 2]\n{a}\n" in c[1]["content"])
                for c in conversations]  # fmt: skip

    def close(self):
        pass


def _llava_fixture(tmp_path):
    rows = [{"question_id": str(i), "question": q, "image": fx.shape_image(colour), "caption": f"흰 바탕에 {colour} 원.",
             "gpt_answer": f"참조 답변 {i}", "category": cat}
            for i, (q, colour, cat) in enumerate([("원은 무슨 색인가요?", "빨간색", "conv"),
                                                  ("이미지를 자세히 설명해 주세요.", "파란색", "detail"),
                                                  ("이 그림이 주는 느낌은 무엇인가요?", "초록색", "complex")])]  # fmt: skip
    return fx._write_parquet(rows, tmp_path / "K-LLaVA-W" / "data" / "test-00000-of-00001.parquet").parent.parent


def test_k_llava_w_conformance(tmp_path, monkeypatch):
    """Three questions (conv, detail, complex); the judge replies "8 6…", "9,7…" and "**7 9**…".

    Published rule: the third reply's first line does not split into two numbers, so it counts as (−1, −1) in both
    means: reference mean (8 + 9 − 1) / 3 = 16/3, answer mean (6 + 7 − 1) / 3 = 12/3, relative score
    (12/3) / (16/3) × 100 = 75.0; model_score 12/3 × 10 = 40.0, reference_score 16/3 × 10 = 53.33.
    Per category: conv 6/8 = 75.0, detail 7/9 = 77.78; complex −1/−1 is not reported (lmms-eval would print 100.0).
    Lenient second figure (the third read as 7 and 9, none dropped): (6 + 7 + 9) / (8 + 9 + 7) × 100 = 91.67.
    """
    answers = {"원은 무슨 색인가요?": "<think>원이 보인다. 색은 빨강.</think>\n빨간색이에요.", "이미지를 자세히 설명해 주세요.": "흰 배경 가운데에 파란 원이 있습니다.",
               "이 그림이 주는 느낌은 무엇인가요?": "차분한 느낌을 줍니다."}  # fmt: skip
    judge = ScriptedJudge({"빨간색이에요.": "8 6\n정확합니다.", "흰 배경 가운데에 파란 원이 있습니다.": "9,7\n짧습니다.",
                           "차분한 느낌을 줍니다.": "**7 9**\n더 좋습니다."})  # fmt: skip
    monkeypatch.setattr(llava_w, "make_judge", lambda *a, **k: judge)
    source, rules = _llava_fixture(tmp_path), _rule_file(tmp_path)
    spec = {"name": "k-llava-w", "source": str(source), "judge": {"model": "unused", "rule_file": str(rules)}}
    recipe = validate({"name": "c", "rollout": {"engine": "hf"}, "eval": {"benchmarks": [spec]}})
    engine, logs = ScriptedVLM(answers), []
    m = run_benchmarks("unused", recipe, tmp_path / "out", engine=engine, log=logs.append)
    assert m["bench/k-llava-w/relative_score"] == pytest.approx(75.0)
    assert m["bench/k-llava-w/model_score"] == pytest.approx(40.0)
    assert m["bench/k-llava-w/reference_score"] == pytest.approx(160 / 3)
    assert m["bench/k-llava-w/relative_score/conv"] == pytest.approx(75.0)
    assert m["bench/k-llava-w/relative_score/detail"] == pytest.approx(700 / 9)
    assert "bench/k-llava-w/relative_score/complex" not in m
    assert m["bench/k-llava-w/relative_score_lenient"] == pytest.approx(22 / 24 * 100)
    assert m["bench/k-llava-w/unparsed_judge"] == 1 and m["bench/k-llava-w/judged"] == 2
    # the published budget (4096 new tokens) when the benchmark entry sets none; the rule of each row's category
    assert engine.budgets == [4096] and not any("warning" in line for line in logs)
    assert "<think>" not in judge.seen[0][1]["content"]  # the judge reads the answer after the reasoning
    assert [c[1]["content"].rsplit("[System]\n", 1)[1] for c in judge.seen] == [f"RULE-{c}\n\n" for c in
                                                                                ("conv", "detail", "complex")]  # fmt: skip
    rows = read_jsonl(tmp_path / "out" / "bench" / "k-llava-w.jsonl")
    assert [(r["reference_score"], r["answer_score"], r["parsed"]) for r in rows] == [
        (8.0, 6.0, True), (9.0, 7.0, True), (-1.0, -1.0, False)]  # fmt: skip
    # a recipe that cuts answers is warned; no rule file: our wording, and a warning that says so
    spec = {"name": "k-llava-w", "source": str(source), "max_new_tokens": 48, "judge": {"model": "unused"}}
    recipe = validate({"name": "c", "rollout": {"engine": "hf"}, "eval": {"benchmarks": [spec]}})
    logs.clear()
    run_benchmarks("unused", recipe, tmp_path / "out2", engine=engine, log=logs.append)
    assert engine.budgets[-1] == 48
    assert any("max_new_tokens 48 is below the benchmark's budget 4096" in line for line in logs)
    assert any("judge.rule_file" in line for line in logs)


def test_cli_judge_keeps_the_recipes_rule_file(tmp_path):
    """``align eval --recipe R --bench k-llava-w --judge URL``: the URL replaces the recipe's judge model, its rule
    file and settings stay; without a max_new_tokens the published 4096-token budget applies."""
    from types import SimpleNamespace

    from align.cli import _bench_specs

    spec = {"name": "k-llava-w", "judge": {"model": "some-dir", "rule_file": "rule_ko.json", "temperature": 0.2}}
    recipe = validate({"name": "c", "eval": {"benchmarks": [spec]}})
    args = SimpleNamespace(bench=["k-llava-w"], source=None, limit=None, judge="http://127.0.0.1:8001/v1")
    (got,) = _bench_specs(args, recipe)
    assert got.judge.url == "http://127.0.0.1:8001/v1" and got.judge.model is None
    assert got.judge.rule_file == "rule_ko.json" and got.max_new_tokens is None
