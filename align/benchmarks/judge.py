"""A judge that runs locally: any model directory through the rollout engine (transformers or vLLM), or an
OpenAI-compatible server (``vllm serve``, ``python -m align.benchmarks.judge_server`` on CPU, …) by URL.

The review follows the published K-LLaVA-W setup (lmms-eval's ``llava_in_the_wild_ko``; VLMEvalKit's
``LLaVABench_KO`` differs only where docs/benchmarks.md says): the judge reads the image caption, the question, the
reference answer (assistant 1) and the model's answer (assistant 2) laid out as the published prompt lays them out,
then the rule of the answer's category, under a system prompt, sampled at temperature 0.2, and puts the two scores
on its first line. The rule text is read from a rule file in the published form (``judge.rule_file``, e.g.
lmms-eval's ``rule_ko.json``); without one, our own wording of the same rule is used and the run says its numbers
are not comparable with published ones. ``parse_scores`` reads a reply as the published parser does and keeps a
reply it cannot read as (−1, −1), which then counts in both means.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from align.errors import UserError
from align.models import resolve_model_path
from rollouts import Sampling, make_engine

# lmms-eval utils_ko.py get_eval: the system message of the Korean review (a setting, kept with its source)
PUBLISHED_SYSTEM = "당신은 답변의 품질을 확인하는 유용하고 정확한 어시스턴트입니다."
PUBLISHED_TEMPERATURE = 0.2  # lmms-eval utils_ko.py and VLMEvalKit LLaVABench_KO: temperature=0.2
PUBLISHED_MAX_TOKENS = 1024  # lmms-eval utils_ko.py: max_tokens=1024
FAILED = (-1.0, -1.0)  # the published value of a reply without a readable pair of scores
RULE_FILE_HINT = ("point judge.rule_file at lmms-eval's lmms_eval/tasks/llava-in-the-wild/rule_ko.json (a JSON object "
                  "of llava_bench_<category>: {role, prompt})")  # fmt: skip

# Our wording of the Korean LLaVA-W rule (the published file's criteria, steps and output form, not its text): used
# only when no rule file is given, and reported as such.
BUILTIN_RULE = {
    "role": "어시스턴트",
    "prompt": (
        "[질문]은 이미지를 보고 만든 것이고, [설명]은 그 이미지를 글로 옮긴 것입니다. 두 어시스턴트의 응답을 유용성, "
        "관련성, 정확성, 세부 수준, 한국어 생성능력(자연스럽고 문법적으로 올바른 한국어)을 기준으로 비교해 평가하세요. 각 "
        "어시스턴트에게 1에서 10까지 전체 점수를 주며, 점수가 높을수록 더 좋은 응답입니다.\n"
        "출력 형식: 첫 줄에는 어시스턴트 1의 점수와 어시스턴트 2의 점수, 두 숫자만 공백 하나로 구분해 쓰세요 (예: 8 9). "
        "다음 줄부터 기준별로 그 점수를 준 이유를 설명하고, 응답의 순서가 판단에 영향을 주지 않도록 하세요."
    ),
}


def load_rules(path: str | Path | None, base_dir: Path | None = None) -> tuple[dict, str]:
    """The rule of each category from a rule file in the published form (``{"llava_bench_conv": {"role": …,
    "prompt": …}, …}``), and where it came from; ``None``: our built-in wording for every category."""
    if path is None:
        return {}, "built-in wording (not the published rule text)"
    p = Path(path).expanduser()
    if not p.is_absolute() and base_dir is not None and (base_dir / p).exists():
        p = base_dir / p
    if not p.exists():
        raise UserError(f"judge rule file {path} does not exist", RULE_FILE_HINT)
    try:
        rules = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"judge rule file {p} is not JSON ({e})", RULE_FILE_HINT) from None
    bad = [k for k, v in rules.items() if not isinstance(v, dict) or not isinstance(v.get("prompt"), str)] \
        if isinstance(rules, dict) else ["(top level)"]  # fmt: skip
    if bad:
        raise UserError(f"judge rule file {p}: entry {bad[0]} has no 'prompt' string", RULE_FILE_HINT)
    return rules, str(p)


def rule_for(rules: dict, category: str | None, source: str = "the rule file") -> dict:
    """The rule of a category (``llava_bench_<category>``, as the published file keys it)."""
    if not rules:
        return BUILTIN_RULE
    key = f"llava_bench_{category}"
    if key not in rules:
        raise UserError(f"judge rule file {source} has no entry '{key}' (category {category!r} of the data)",
                        f"the published file has llava_bench_conv, llava_bench_detail and llava_bench_complex; "
                        f"{RULE_FILE_HINT}")  # fmt: skip
    return rules[key]


def judge_prompt(question: str, context: str, reference: str, answer: str, category: str | None = None,
                 rule: dict | None = None, system: str = PUBLISHED_SYSTEM) -> list[dict]:  # fmt: skip
    """Chat messages for one review, in the published layout: caption, question, the two answers between their
    role's start and end marks, then ``[System]`` and the category's rule."""
    rule = rule or BUILTIN_RULE
    role = rule.get("role") or "어시스턴트"
    blocks = [("설명", context), ("질문", question)]
    content = "".join(f"[{name}]\n{text}\n\n" for name, text in blocks)
    for i, text in ((1, reference), (2, answer)):
        content += f"[{role} {i}]\n{text}\n\n[{role} {i} 끝]\n\n"
    content += f"[System]\n{rule['prompt']}\n\n"
    return [{"role": "system", "content": system}, {"role": "user", "content": content}]


def parse_scores(review: str) -> tuple[float, float]:
    """(reference score, answer score) as the published parser reads a reply: the first line of the stripped reply,
    commas read as spaces, must split on single spaces into exactly two numbers; anything else is (−1, −1)."""
    first = str(review or "").strip().split("\n")[0].strip().replace(",", " ")
    parts = first.split(" ")
    if len(parts) != 2:
        return FAILED
    try:
        return float(parts[0]), float(parts[1])
    except ValueError:
        return FAILED


_NUM = r"(10(?:\.0+)?|[0-9](?:\.[0-9]+)?)"
_PAIR = re.compile(r"^\W*" + _NUM + r"\s*(?:점)?\s*(?:[,/:|]|\s|과|와|및|vs\.?)\s*" + _NUM + r"\s*(?:점)?\W*$")
_LABELLED = re.compile(r"(?:어시스턴트|assistant)\s*([12])\s*(?:의\s*)?(?:점수|score)?\s*[:：=은는]?\s*" + _NUM,
                       re.IGNORECASE)  # fmt: skip


def parse_scores_lenient(review: str) -> tuple[float, float] | None:
    """Our lenient reading (a labelled second figure, not the published one): the first line that is just two
    numbers ("8 6", "8, 6", "8점 6점", "8/6", "**7 9**"), else labelled scores ("어시스턴트 1: 8 … 어시스턴트 2: 6");
    scores in 1..10; None when the reply holds no pair."""
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
        self.max_new_tokens, self.temperature = spec.max_new_tokens, spec.temperature
        self.engine = make_engine(rollout, resolve_model_path(spec.model), None, batch_size=spec.batch_size,
                                  seed=seed)  # fmt: skip

    def __call__(self, conversations: list[list[dict]]) -> list[str]:

        sampling = Sampling(temperature=self.temperature, max_new_tokens=self.max_new_tokens)
        outs = self.engine.generate(conversations, None, sampling)
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
        self.timeout, self.max_new_tokens, self.temperature = spec.timeout, spec.max_new_tokens, spec.temperature
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
        out = self._request("/chat/completions", {"model": self.name, "messages": messages, "temperature": self.temperature,
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
