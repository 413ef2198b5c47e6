"""Rollout engine on transformers ``generate``: always available, CPU or GPU.

With ``n`` samples per prompt, transformers 5 encodes the images once but repeats each prompt n times in the language
model's prefill; here each prompt is prefilled once and its key/value cache repeated for the n samples
(``align.shared_prompt.SharedPrefill``, also used by GRPO's transformers generation, where TRL hands over every prompt
G times, images included; ``shared_prompt: auto | on | off`` as the stage sets it). The samples are those plain
``generate`` draws from the same seed: the decode steps, their logits (up to float rounding) and their random draws
are the same."""

from __future__ import annotations

import dataclasses

import torch

from align.chat import chat_texts
from align.models import load_model_and_processor
from align.shared_prompt import SharedPrefill
from rollouts.base import Completion, Engine, Sampling, published_sampling, resolve_sampling, truncate_at_stop


def stop_ids(generation_config, processor, extra: list[int]) -> list[int]:
    """End-of-turn ids: the generation config's eos ids (HyperCLOVAX: <|endofturn|>, <|stop|>) + the tokenizer's."""
    ids = getattr(generation_config, "eos_token_id", None)
    ids = [] if ids is None else ([ids] if isinstance(ids, int) else list(ids))
    tok = getattr(processor, "tokenizer", processor)
    if tok.eos_token_id is not None:
        ids.append(tok.eos_token_id)
    return sorted(set(ids) | set(extra))


def image_token_ids(config, processor) -> list[int]:
    """Placeholder tokens a completion must never contain (their features would be missing)."""
    ids = set()
    for attr in ("image_token_id", "image_token_index", "video_token_id"):
        value = getattr(config, attr, None)
        if isinstance(value, int):
            ids.add(value)
    tok = getattr(processor, "tokenizer", processor)
    for token in ("<image>", "<fake_token_around_image>", "<global-img>", "<|image_pad|>", "<|vision_start|>"):
        tid = tok.convert_tokens_to_ids(token)
        if isinstance(tid, int) and tid != tok.unk_token_id and tid is not None and tid >= 0:
            ids.add(tid)
    return sorted(ids)


class HFEngine(Engine):
    name = "hf"

    def __init__(self, model, processor, batch_size: int = 32, family=None, shared_prompt: str = "auto"):
        self.model, self.processor, self.batch_size, self.family = model, processor, batch_size, family
        self.tokenizer = getattr(processor, "tokenizer", processor)
        # each prompt prefilled once for its n samples, the first time checked against a plain forward
        self.prefill = SharedPrefill(shared_prompt, on_off=lambda why: print(f"rollouts: each prompt prefilled per "
                                                                             f"sample from now on ({why})"))  # fmt: skip

    @classmethod
    def from_path(cls, path: str, model_spec=None, batch_size: int = 32, dtype: str | None = None,
                  shared_prompt: str = "auto"):  # fmt: skip
        model, processor, family = load_model_and_processor(path, model_spec, dtype)  # stops on its stop tokens
        if torch.cuda.is_available():
            model = model.to("cuda")
        model.eval()
        return cls(model, processor, batch_size, family, shared_prompt)

    @torch.no_grad()
    def generate(self, prompts, images, sampling: Sampling) -> list[list[Completion]]:
        # settings the caller left unset: the model's published generation_config.json (rollouts/base.py)
        sampling = resolve_sampling(sampling, published_sampling(self.model.generation_config))
        results: list[list[Completion] | None] = [None] * len(prompts)
        # Batches hold prompts with the same number of images (processors differ in mixed-batch support).
        order = sorted(range(len(prompts)), key=lambda i: len(images[i]) if images else 0)
        batches, current, key = [], [], None
        for i in order:
            k = len(images[i]) if images else 0
            if current and (k != key or len(current) >= self.batch_size):
                batches.append(current)
                current = []
            current.append(i)
            key = k
        if current:
            batches.append(current)
        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)
        for idx in batches:
            outs = self._generate_batch(
                [prompts[i] for i in idx], [images[i] for i in idx] if images else None, sampling
            )
            for i, out in zip(idx, outs):
                results[i] = out
        return results  # type: ignore[return-value]

    def _generate_batch(self, prompts, images, sampling: Sampling) -> list[list[Completion]]:
        if not (sampling.temperature and sampling.temperature > 0) and sampling.n > 1:
            # greedy decoding gives one answer: compute it once and repeat it n times
            one = self._generate_batch(prompts, images, dataclasses.replace(sampling, n=1))
            return [[dataclasses.replace(group[0]) for _ in range(sampling.n)] for group in one]
        texts = chat_texts(self.processor, prompts, images)
        has_images = bool(images) and any(images)
        kwargs = {"text": texts, "padding": True, "return_tensors": "pt", "add_special_tokens": False}
        if has_images:
            kwargs["images"] = images
        old_side = self.tokenizer.padding_side
        self.tokenizer.padding_side = "left"
        try:
            enc = self.processor(**kwargs) if has_images or hasattr(self.processor, "image_processor") else None
        except TypeError:
            enc = None
        if enc is None:
            enc = self.tokenizer(texts, padding=True, return_tensors="pt", add_special_tokens=False)
        self.tokenizer.padding_side = old_side
        enc = {k: v.to(self.model.device) for k, v in enc.items() if hasattr(v, "to")}
        stops = stop_ids(self.model.generation_config, self.processor, sampling.stop_token_ids)
        gen_kwargs = {
            "max_new_tokens": sampling.max_new_tokens,
            "num_return_sequences": sampling.n,
            "eos_token_id": stops,
            "pad_token_id": self.tokenizer.pad_token_id,
            "return_dict_in_generate": True,
            "output_logits": True,
        }
        banned = image_token_ids(self.model.config, self.processor)
        if banned:
            gen_kwargs["suppress_tokens"] = banned
        if sampling.temperature and sampling.temperature > 0:
            gen_kwargs.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p)
            gen_kwargs["top_k"] = sampling.top_k if sampling.top_k and sampling.top_k > 0 else None
        else:
            gen_kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if sampling.repetition_penalty != 1.0:
            gen_kwargs["repetition_penalty"] = sampling.repetition_penalty
        if sampling.stop:
            gen_kwargs.update(stop_strings=list(sampling.stop), tokenizer=self.tokenizer)
        out = None
        if sampling.n > 1:
            images_in = {k: v for k, v in enc.items() if k not in ("input_ids", "attention_mask")}
            counts = [len(x) for x in images] if has_images else None
            out = self.prefill.generate(self.model, self.model.generate, enc["input_ids"], enc["attention_mask"],
                                        images_in, counts, repeat=sampling.n,
                                        **{**gen_kwargs, "num_return_sequences": 1})  # fmt: skip
        if out is None:
            out = self.model.generate(**enc, **gen_kwargs)
        prompt_len = enc["input_ids"].shape[1]
        seqs = out.sequences[:, prompt_len:].tolist()
        logits = torch.stack(out.logits, dim=1).float() if out.logits else None  # raw, before warping
        stop_set = set(stops)
        completions: list[list[Completion]] = []
        for row, ids in enumerate(seqs):
            end, reason = len(ids), "length"
            for j, t in enumerate(ids):
                if t in stop_set:
                    end, reason = j + 1, "stop"
                    break
            ids = ids[:end]
            if logits is not None and ids:
                lp = torch.log_softmax(logits[row, : len(ids)], dim=-1)
                logprobs = lp.gather(1, torch.tensor(ids, device=lp.device)[:, None]).squeeze(1).tolist()
            else:
                logprobs = []
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            text, cut = truncate_at_stop(text, sampling.stop)
            if cut:
                reason = "stop"
            if row % sampling.n == 0:
                completions.append([])
            completions[-1].append(Completion(text=text, token_ids=ids, logprobs=logprobs, finish_reason=reason))
        return completions
