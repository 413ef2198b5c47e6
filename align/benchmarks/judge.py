"""A judge that runs locally: any model directory through the rollout engine (transformers or vLLM), or an
OpenAI-compatible server (``vllm serve``, ``python -m align.benchmarks.judge_server`` on CPU, …) by URL.

The judge compares a reference answer (assistant 1) with the model's answer (assistant 2) and replies with two
scores from 1 to 10 on its first line, as LLaVA-Bench asks; ``parse_scores`` reads them robustly and returns None
when a reply holds no pair of scores (the row is counted, not guessed).
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from align.errors import UserError
from align.models import resolve_model_path
from rollouts import Sampling, make_engine

JUDGE_SYSTEM = "당신은 답변의 품질을 꼼꼼하고 공정하게 평가하는 심사위원입니다."

# Our wording of LLaVA-Bench's review instruction (two scores on the first line, then the reasons), in Korean,
# with the criteria the Korean LLaVA-W judge uses: helpfulness, relevance, accuracy, detail, fluent Korean.
JUDGE_RULE = (
    "위 [질문]은 이미지를 보고 만든 질문이며, [설명]은 그 이미지의 내용을 글로 옮긴 것입니다. 두 어시스턴트의 답변을 "
    "유용성, 관련성, 정확성, 세부 수준, 자연스럽고 올바른 한국어라는 기준으로 비교해 평가하세요. 각 어시스턴트에게 1점부터 "
    "10점까지 전체 점수를 주며, 점수가 높을수록 더 좋은 답변입니다.\n"
    "출력 형식: 첫 줄에는 어시스턴트 1의 점수와 어시스턴트 2의 점수, 두 숫자만 공백으로 구분해 쓰세요 (예: 8 6). "
    "다음 줄부터 그 점수를 준 이유를 설명하세요. 답변이 제시된 순서가 판단에 영향을 주지 않도록 하세요."
)


def judge_prompt(question: str, context: str, reference: str, answer: str, category: str | None = None) -> list[dict]:
    """Chat messages for one review. ``category`` (conv / detail / complex) does not change the rule, as in the
    Korean LLaVA-W rule file, where every category carries the same instruction."""
    content = (f"[설명]\n{context}\n\n[질문]\n{question}\n\n"
               f"[어시스턴트 1]\n{reference}\n\n[어시스턴트 1 끝]\n\n"
               f"[어시스턴트 2]\n{answer}\n\n[어시스턴트 2 끝]\n\n[System]\n{JUDGE_RULE}\n")  # fmt: skip
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": content}]


_NUM = r"(10(?:\.0+)?|[0-9](?:\.[0-9]+)?)"
_PAIR = re.compile(r"^\W*" + _NUM + r"\s*(?:점)?\s*(?:[,/:|]|\s|과|와|및|vs\.?)\s*" + _NUM + r"\s*(?:점)?\W*$")
_LABELLED = re.compile(r"(?:어시스턴트|assistant)\s*([12])\s*(?:의\s*)?(?:점수|score)?\s*[:：=은는]?\s*" + _NUM,
                       re.IGNORECASE)  # fmt: skip


def parse_scores(review: str) -> tuple[float, float] | None:
    """(reference score, answer score) from a judge reply, or None. Reads, in order: a first line that is just two
    numbers ("8 6", "8, 6", "8점 6점", "8/6"); then any line that is; then labelled scores ("어시스턴트 1: 8 …
    어시스턴트 2: 6"). Scores must lie in 1..10."""
    lines = [ln.strip().strip("`*#") for ln in str(review or "").strip().splitlines() if ln.strip()]
    for line in lines:
        m = _PAIR.match(line)
        if m:
            a, b = float(m.group(1)), float(m.group(2))
            if 1 <= a <= 10 and 1 <= b <= 10:
                return a, b
    found: dict[str, float] = {}
    for who, value in _LABELLED.findall(str(review or "")):
        found.setdefault(who, float(value))
    if set(found) == {"1", "2"} and all(1 <= v <= 10 for v in found.values()):
        return found["1"], found["2"]
    return None


class EngineJudge:
    """A model directory judged through the rollout engine (greedy)."""

    def __init__(self, spec, rollout, seed: int = 0):

        self.name = spec.model
        self.max_new_tokens = spec.max_new_tokens
        self.engine = make_engine(rollout, resolve_model_path(spec.model), None, batch_size=spec.batch_size,
                                  seed=seed)  # fmt: skip

    def __call__(self, conversations: list[list[dict]]) -> list[str]:

        outs = self.engine.generate(conversations, None, Sampling(temperature=0.0, max_new_tokens=self.max_new_tokens))
        return [o[0].text for o in outs]

    def close(self) -> None:
        self.engine.close()


def _url_hint(url: str) -> str:
    return (f"start an OpenAI-compatible server at {url} (e.g. `vllm serve JUDGE_MODEL --port 8000`, or on CPU "
            "`python -m align.benchmarks.judge_server JUDGE_MODEL_DIR --port 8000`), or set judge.model to a local "
            "model directory to judge in-process")  # fmt: skip


class URLJudge:
    """An OpenAI-compatible ``/v1/chat/completions`` endpoint (``judge.url``); the model name comes from
    ``judge.model_name`` or the server's ``/v1/models``."""

    def __init__(self, spec):
        self.url = spec.url.rstrip("/")
        if not self.url.endswith("/v1"):
            self.url += "/v1"
        self.timeout, self.max_new_tokens = spec.timeout, spec.max_new_tokens
        self.concurrency = spec.concurrency
        key = os.environ.get(spec.api_key_env) if spec.api_key_env else None
        self.headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
        self.name = spec.model_name or self._first_model()

    def _request(self, path: str, payload: dict | None = None) -> dict:
        data = json.dumps(payload).encode() if payload is not None else None
        req = urllib.request.Request(self.url + path, data=data, headers=self.headers,
                                     method="POST" if data is not None else "GET")  # fmt: skip
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read().decode())
        except urllib.error.HTTPError as e:
            body = e.read().decode(errors="replace")[:300]
            raise UserError(f"judge at {self.url}{path} answered HTTP {e.code}: {body}", _url_hint(self.url)) from None
        except (urllib.error.URLError, OSError, TimeoutError) as e:
            reason = getattr(e, "reason", e)
            raise UserError(f"judge at {self.url} is unreachable ({reason})", _url_hint(self.url)) from None

    def _first_model(self) -> str:
        models = self._request("/models").get("data") or []
        if not models:
            raise UserError(f"judge at {self.url} lists no models", "set judge.model_name")
        return models[0]["id"]

    def _one(self, messages: list[dict]) -> str:
        out = self._request("/chat/completions", {"model": self.name, "messages": messages, "temperature": 0.0,
                                                  "max_tokens": self.max_new_tokens})  # fmt: skip
        try:
            return out["choices"][0]["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            return ""

    def __call__(self, conversations: list[list[dict]]) -> list[str]:
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(self._one, conversations))

    def close(self) -> None:
        pass


def make_judge(spec, rollout, seed: int = 0):
    if spec is None:
        raise UserError("k-llava-w needs a judge", "add `judge: {model: JUDGE_MODEL_DIR}` or `judge: {url: http://…}`")
    return URLJudge(spec) if spec.url else EngineJudge(spec, rollout, seed)
