"""Shared-prompt GRPO: each unique prompt, with its images, is encoded once per group instead of G times.

TRL 1.16 repeats every prompt ``num_generations`` (G) times after sampling: the policy's log-prob forward and backward,
the old/reference log-prob passes and the transformers prefill all run the prompt — and the vision tower on its images
— G times. Here the unique prompts of a batch run once (the *prefix pass*) into a key/value cache that stays in the
autograd graph; the cache is indexed out to the rows of their completions and the completions run against it (the
*completion pass*), scored by TRL's own fused LM head. The backward of the indexing sums the G completions' gradients
into the one prefix pass, which is the chain rule of the repeated forward: log-probs and gradients equal TRL's up to
float rounding (``tests/test_shared_prompt.py``).

* Unique prompts are found by content (token ids, mask and each row's image tensors), so TRL's shuffling of the
  batch and chunking (``batch_size``) change nothing.
* Positions are TRL's: ``arange`` over the padded width (the prompt's left padding included, as in TRL's forward),
  or Qwen2.5-VL's multimodal rope index over the whole prompt + completion.
* The prompt's last token runs with the completions (one token, G times), so that the fused head scores every
  completion token from the completion pass; it is text (the generation prompt), never an image placeholder.

A KV cache rather than packing all G completions behind their prompt in one row with a block mask: the cache is what
every transformers model takes (``past_key_values``), needs no 4D mask or per-model position ids, and its attention
cost is G·C·(P+C) instead of (P+G·C)² (``docs/grpo_speed.md`` has the measurement).

Settings or batches it cannot serve raise ``Unsupported`` and go TRL's way. The trainer's switch (``shared_prompt: auto
| on | off``, the first-batch check, counts and reasons in ``summary.json``) is ``SharedPrompt`` in
``align/trl_extensions.py``; this module holds the model pieces it and ``rollouts/hf.py`` use, and the one fallback
around the shared prefill that both generators go through (``SharedPrefill``).
"""

from __future__ import annotations

import contextlib
import inspect
from collections import Counter
from collections.abc import Callable

import torch
from torch.nn.parallel import DistributedDataParallel
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer
from transformers.modeling_layers import GradientCheckpointingLayer

from align.errors import StageError

MODES = ("auto", "on", "off")  # the stages' ``shared_prompt`` setting

# one entry per row (LLaVA-OneVision's batch_num_images: per row with images)
# HyperCLOVAX-SEED-Vision's own inputs: padded per row ([rows, grids, …], [rows, images, 2], [rows, images])
ROW_KEYS = ("pixel_attention_mask", "token_type_ids", "mm_token_type_ids", "batch_num_images",
            "pixel_values_images", "image_sizes_images", "vision_query_lengths_images")  # fmt: skip
SEQUENCE_KEYS = ("token_type_ids", "mm_token_type_ids")  # one entry per token of the prompt (+ completion)
IMAGE_KEYS = ("image_sizes",)  # one entry per image
KNOWN_KEYS = ("pixel_values", "image_grid_thw", *ROW_KEYS, *IMAGE_KEYS)
MROPE_BACKBONES = ("Qwen2_5_VLModel", "Qwen2VLModel")  # get_rope_index(input_ids, mm_token_type_ids, image_grid_thw…)


class Unsupported(Exception):
    """The model, setting or batch cannot take the shared-prompt path (the message says why). ``batch``: only this
    batch (or call) is the problem; otherwise the model is, and the path stays off for the run."""

    def __init__(self, message: str, batch: bool = False):
        super().__init__(message)
        self.batch = batch


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"shared_prompt must be one of {', '.join(MODES)}, not {mode!r}")
    return mode


def refused(reason: str) -> StageError:
    """The error of ``shared_prompt: on`` where the shared path cannot run."""
    return StageError(f"shared_prompt is 'on' but this run cannot use it: {reason}",
                      "set shared_prompt: auto (falls back by itself) or off")  # fmt: skip


# ------------------------------------------------------------------ image inputs, row by row


def split_rows(inputs: dict, num_images: list[int] | None, n_rows: int) -> list[dict]:
    """Each row's slice of a batch's image inputs, in TRL 1.16's layouts (``_get_per_token_logps_and_entropies``):
    Qwen patches by ``image_grid_thw``, image-indexed ``pixel_values`` (LLaVA, LLaVA-OneVision), row-indexed
    ``pixel_values`` (Idefics3), row-indexed masks and token types, image-indexed ``image_sizes``."""
    unknown = sorted(k for k in inputs if k not in KNOWN_KEYS)
    if unknown:
        raise Unsupported(f"image inputs {', '.join(unknown)} have a layout this path does not know")
    rows: list[dict] = [{} for _ in range(n_rows)]
    counts = list(num_images) if num_images is not None else None
    img = [0] if counts is None else [0, *torch.tensor(counts).cumsum(0).tolist()]

    def by_image(key, tensor, bounds):
        for r in range(n_rows):
            rows[r][key] = tensor[bounds[img[r]] : bounds[img[r + 1]]]

    def by_row(key, tensor):
        if tensor.size(0) != n_rows:
            raise Unsupported(f"{key} has {tensor.size(0)} entries for {n_rows} rows", batch=True)
        for r in range(n_rows):
            rows[r][key] = tensor[r : r + 1]

    pixel_values = inputs.get("pixel_values")
    grid = inputs.get("image_grid_thw")
    needs_counts = grid is not None or any(k in inputs for k in IMAGE_KEYS)
    if needs_counts and counts is None:
        raise Unsupported("image inputs without per-row image counts", batch=True)
    if grid is not None:
        by_image("image_grid_thw", grid, list(range(grid.size(0) + 1)))
        if pixel_values is not None:
            by_image("pixel_values", pixel_values, [0, *grid.prod(-1).cumsum(0).tolist()])
    elif pixel_values is not None:
        if counts is not None and pixel_values.size(0) == sum(counts):
            by_image("pixel_values", pixel_values, list(range(pixel_values.size(0) + 1)))
        else:
            by_row("pixel_values", pixel_values)
    for key in ROW_KEYS:
        if inputs.get(key) is not None:
            if key == "batch_num_images" and counts is not None and inputs[key].size(0) != n_rows:
                bounds = [0, *torch.tensor([c > 0 for c in counts]).cumsum(0).tolist()]  # rows with images only
                for r in range(n_rows):
                    rows[r][key] = inputs[key][bounds[r] : bounds[r + 1]]
                continue
            by_row(key, inputs[key])
    for key in IMAGE_KEYS:
        if inputs.get(key) is not None:
            by_image(key, inputs[key], list(range(inputs[key].size(0) + 1)))
    return rows


def merge_rows(rows: list[dict]) -> dict:
    """The image inputs of the selected rows, in the same layout as the batch's."""
    return {k: torch.cat([r[k] for r in rows]) for k in (rows[0] if rows else {})}


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(a[k].shape == b[k].shape and torch.equal(a[k], b[k]) for k in a)


def group_rows(ids: torch.Tensor, mask: torch.Tensor, rows: list[dict]) -> tuple[list[int], torch.Tensor]:
    """Unique prompts of a batch: ``(first row of each, inverse)`` with ``inverse[r]`` = the unique index of row r.
    Rows are the same prompt when their unpadded ids, mask and every image tensor are equal."""
    keys = ids.masked_fill(mask == 0, -1).tolist()
    seen: dict[tuple, list[int]] = {}
    uniq: list[int] = []
    inverse: list[int] = []
    for r, key in enumerate(map(tuple, keys)):
        match = next((u for u in seen.get(key, []) if _same(rows[r], rows[uniq[u]])), None)
        if match is None:
            match = len(uniq)
            seen.setdefault(key, []).append(match)
            uniq.append(r)
        inverse.append(match)
    return uniq, torch.tensor(inverse, device=ids.device)


# ------------------------------------------------------------------ model pieces


def unwrap(model):
    """(transformers model, its backbone): the backbone is what TRL's fused LM head runs (``model.base_model``)."""
    if hasattr(model, "module"):
        raise Unsupported(f"the model is wrapped by {type(model).__name__} (multi-process training)", batch=True)
    base = model
    if hasattr(model, "peft_config") and hasattr(model, "get_base_model"):
        if getattr(model, "active_peft_config", None) is not None and model.active_peft_config.is_prompt_learning:
            raise Unsupported("prompt-learning PEFT adapters change the prompt itself")
        base = model.get_base_model()
    backbone = base.base_model
    if backbone is base:
        raise Unsupported(f"{type(base).__name__} has no separate backbone")
    name = type(backbone).__name__
    if hasattr(backbone, "get_rope_index") and name not in MROPE_BACKBONES:
        raise Unsupported(f"the multimodal rotary positions of {name} are not handled")
    return base, backbone


def training_positions(backbone, input_ids, attention_mask, inputs) -> torch.Tensor | None:
    """The position ids TRL's full forward uses, or None when they are ``arange`` over the padded width (then the
    cache length gives the same positions to the completion pass)."""
    if type(backbone).__name__ not in MROPE_BACKBONES:
        return None
    mm, grid = inputs.get("mm_token_type_ids"), inputs.get("image_grid_thw")
    if mm is not None and grid is not None:  # what compute_3d_position_ids does for a forward without cache
        return backbone.get_rope_index(input_ids, mm_token_type_ids=mm, image_grid_thw=grid,
                                       attention_mask=attention_mask)[0]  # fmt: skip
    b, n = input_ids.shape
    return torch.arange(n, device=input_ids.device).view(1, 1, -1).expand(3, b, n)


def _position_slice(positions, rows, start, end):
    if positions is None:
        return None
    out = positions[..., start:end]
    if rows is not None:
        out = out[:, rows] if out.ndim == 3 else out[rows]
    return out


class _RecordLayer(DynamicLayer):
    """Prefix pass: keeps the prompt's keys/values, replacing rather than appending, so that a checkpointed layer
    recomputed in backward records the same tensors again instead of doubling the cache."""

    def update(self, key_states, value_states, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        self.keys, self.values = key_states, value_states
        return key_states, value_states


class _ReadLayer(DynamicLayer):
    """Completion pass: the prompt's keys/values (one copy per completion row) in front of the completion's own,
    without storing them: a recomputed layer reads the same states."""

    def __init__(self, keys, values):
        super().__init__()
        self.keys, self.values, self.dtype, self.device = keys, values, keys.dtype, keys.device
        self.is_initialized, self.reads = True, 0

    def update(self, key_states, value_states, *args, **kwargs):
        self.reads += 1
        return torch.cat([self.keys, key_states], dim=-2), torch.cat([self.values, value_states], dim=-2)


def _cache(config, layers=None):
    cache = DynamicCache(config=config)
    if not cache.layers or any(type(layer) is not DynamicLayer for layer in cache.layers):
        raise Unsupported("the model's cache has sliding-window or other non-plain layers")
    if layers is not None:
        cache.layers = layers(len(cache.layers))
    return cache


def read_only(cache):
    """A cache that serves ``cache``'s states to one forward without growing (the original stays as it was)."""
    return _cache_like([_ReadLayer(x.keys, x.values) for x in cache.layers])


def _cache_like(layers):
    out = DynamicCache()
    out.layers = layers
    out.layer_class_to_replicate = None
    return out


@contextlib.contextmanager
def cache_under_checkpointing(model):
    """Let checkpointed decoder layers take the cache (transformers drops it under gradient checkpointing unless a
    layer only reads it): the record/read layers above give the same states when a layer is recomputed."""
    layers = [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer) and m.gradient_checkpointing]
    for m in layers:
        m._can_checkpoint_with_cache = True
    try:
        yield
    finally:
        for m in layers:
            del m._can_checkpoint_with_cache


def prefix_cache(base, backbone, ids, mask, image_inputs, positions=None, record=True):
    """Run the prompts (without their last token) once into a key/value cache (in the autograd graph when grads
    are on). ``record``: the prefix-pass layers above; otherwise a plain cache that ``generate`` extends."""
    cache = _cache(base.config, (lambda n: [_RecordLayer() for _ in range(n)]) if record else None)
    kwargs = dict(image_inputs)
    if positions is not None:
        kwargs["position_ids"] = positions
    with cache_under_checkpointing(base):
        backbone(input_ids=ids, attention_mask=mask, past_key_values=cache, use_cache=True, **kwargs)
    if cache.get_seq_length() != ids.size(1):
        raise Unsupported(f"the model cached {cache.get_seq_length()} positions for {ids.size(1)} prompt tokens "
                          "(it inserts tokens inside forward)")  # fmt: skip
    return cache


def image_token_ids(config) -> list[int]:
    ids = {getattr(config, a, None) for a in ("image_token_id", "image_token_index", "video_token_id")}
    return sorted(i for i in ids if isinstance(i, int))


def shared_logps(model, input_ids, attention_mask, logits_to_keep, compute_entropy, inputs: dict,
                 num_images=None, rows: list[dict] | None = None):  # fmt: skip
    """Per-token log-probs (and entropies) of the completions, each unique prompt encoded once.

    Same arguments and result as one chunk of TRL's ``_get_per_token_logps_and_entropies``; ``model`` must carry
    TRL's fused LM head (``add_fused_lm_head``). Returns None when no prompt repeats (nothing to share)."""
    base, backbone = unwrap(model)
    width = input_ids.size(1) - logits_to_keep  # prompt width (left padded)
    if width < 2:
        raise Unsupported("prompts of one token", batch=True)
    banned = image_token_ids(base.config)
    if banned and torch.isin(input_ids[:, width - 1 :], torch.tensor(banned, device=input_ids.device)).any():
        raise Unsupported(
            "an image placeholder after the prompt's images (the last prompt token or a completion)", batch=True
        )
    prompt, prompt_mask = input_ids[:, :width], attention_mask[:, :width]
    rows = rows if rows is not None else split_rows(inputs, num_images, input_ids.size(0))
    uniq, inverse = group_rows(prompt, prompt_mask, rows)
    if len(uniq) == input_ids.size(0):
        return None
    positions = training_positions(backbone, input_ids, attention_mask, inputs)
    prefix_inputs = merge_rows([rows[r] for r in uniq])
    for key in SEQUENCE_KEYS:
        if key in prefix_inputs:
            prefix_inputs[key] = prefix_inputs[key][:, : width - 1]
    prefix = prefix_cache(base, backbone, prompt[uniq, :-1], prompt_mask[uniq, :-1], prefix_inputs,
                          _position_slice(positions, uniq, 0, width - 1))  # fmt: skip
    # indexed out to the completion rows: differentiable, its backward sums each prompt's rows
    # (index_select: its backward, index_add, sums in a fixed order; a plain [inverse]'s accumulates across threads
    # in whatever order they finish, and two runs would differ in the last bits)
    cache = _cache_like([_ReadLayer(x.keys.index_select(0, inverse), x.values.index_select(0, inverse))
                         for x in prefix.layers])  # fmt: skip
    tail = input_ids[:, width - 1 :]
    labels = tail.masked_fill(attention_mask[:, width - 1 :] == 0, -100)
    labels[:, 0] = -100
    kwargs = {"input_ids": tail, "attention_mask": attention_mask, "past_key_values": cache, "labels": labels,
              "fused_lm_head": True}  # fmt: skip
    if positions is not None:
        kwargs["position_ids"] = positions[..., width - 1 :]
    for key in SEQUENCE_KEYS:
        if inputs.get(key) is not None:
            kwargs[key] = inputs[key][:, width - 1 :]
    with cache_under_checkpointing(base):
        out = model(**kwargs)
    if any(layer.reads == 0 for layer in cache.layers):
        raise Unsupported("a decoder layer ignored the prompt cache")
    return out.log_probs, (out.entropy if compute_entropy else None), len(uniq)


def shared_prefill_generate(model, generate, input_ids, attention_mask, image_inputs: dict, num_images, repeat: int = 1,
                            check: bool = False, **gen_kwargs):  # fmt: skip
    """``generate(input_ids, attention_mask, **image_inputs, **gen_kwargs)`` with each unique prompt prefilled once.

    ``repeat`` > 1: every row is one prompt to sample ``repeat`` times (rows repeated as ``num_return_sequences``
    does); otherwise repeated rows (TRL's G copies of a prompt) are found by content. The prompts without their last
    token run once into a cache, at the positions ``generate`` would give them; the cache is indexed out to every row
    and ``generate`` continues from it (its first step runs the last prompt token). Returns None when no prompt
    repeats; raises ``Unsupported`` for a model or setting it cannot serve. ``check``: first compare the next-token
    logits after the cached prompts with a plain forward of the whole prompts (``Unsupported`` when they differ)."""
    base, backbone = unwrap(model)
    config = gen_kwargs.get("generation_config") or base.generation_config
    if getattr(config, "cache_implementation", None) or gen_kwargs.get("cache_implementation"):
        raise Unsupported(f"cache_implementation {config.cache_implementation!r}")
    if (getattr(config, "num_beams", None) or 1) != 1 or (gen_kwargs.get("num_beams") or 1) != 1:
        raise Unsupported("beam search")
    if "position_ids" not in inspect.signature(base.forward).parameters:
        raise Unsupported(f"{type(base).__name__}.forward takes no position_ids")
    n = input_ids.size(0)
    if input_ids.size(1) < 2:
        raise Unsupported("prompts of one token", batch=True)
    rows = split_rows(image_inputs, num_images, n)
    if repeat > 1:
        uniq = list(range(n))
        inverse = torch.arange(n, device=input_ids.device).repeat_interleave(repeat)
    else:
        uniq, inverse = group_rows(input_ids, attention_mask, rows)
        if len(uniq) == n:
            return None
    ids, mask = input_ids[uniq], attention_mask[uniq]
    full_inputs = merge_rows([rows[r] for r in uniq])
    # the positions generate() computes for these prompts (attention-mask cumsum; Qwen2.5-VL: its rope index)
    positions = base._prepare_position_ids_for_generation(ids, {"attention_mask": mask, **full_inputs})
    prefix_inputs = {k: v[:, :-1] if k in SEQUENCE_KEYS else v for k, v in full_inputs.items()}
    cache = prefix_cache(base, backbone, ids[:, :-1], mask[:, :-1], prefix_inputs, positions[..., :-1], record=False)
    if check:
        check_prefill(base, cache, ids, mask, positions, full_inputs)
    cache.batch_select_indices(inverse)
    positions = positions[:, inverse] if positions.ndim == 3 else positions[inverse]
    return generate(input_ids=ids[inverse], attention_mask=mask[inverse], position_ids=positions,
                    past_key_values=cache, **gen_kwargs)  # fmt: skip


class SharedPrefill:
    """``shared_prompt: auto | on | off`` around ``shared_prefill_generate``, for one generator (the HF engine's n
    samples per prompt, GRPO's transformers generation). The first shared prefill is checked against a plain forward;
    a model or setting it cannot serve, or a failure before that check passed, turns it off for the rest of the run
    (``on`` stops instead, ``off`` never tries); a batch it cannot serve takes plain ``generate`` for that call.
    ``counts`` (``shared`` / ``plain`` calls) and ``fallbacks`` (reason -> calls) say which path ran and why;
    ``on_off(reason)`` is told when it turns off."""

    def __init__(self, mode: str = "auto", on_off: Callable[[str], None] | None = None):
        self.mode, self.on_off = check_mode(mode), on_off
        self.reason: str | None = "shared_prompt: off" if mode == "off" else None  # off for the rest of the run
        self.checked = False  # a shared prefill passed the check against a plain forward
        self.counts: Counter = Counter()
        self.fallbacks: Counter = Counter()

    def generate(self, model, generate, input_ids, attention_mask, image_inputs: dict, num_images, repeat: int = 1,
                 **gen_kwargs):  # fmt: skip
        """``shared_prefill_generate``'s result, or None: then the caller runs plain ``generate`` (counted here)."""
        out = None
        if self.reason is None:
            try:
                out = shared_prefill_generate(model, generate, input_ids, attention_mask, image_inputs, num_images,
                                              repeat=repeat, check=not self.checked, **gen_kwargs)  # fmt: skip
            except Unsupported as e:
                self.fallbacks[str(e)] += 1
                if not e.batch:  # the model or setting, or the first check
                    self._off(str(e))
            except Exception as e:
                if self.mode == "on" or self.checked:
                    raise
                self._off(f"generation failed on the shared path: {type(e).__name__}: {e}")
            self.checked = self.checked or out is not None
        self.counts["shared" if out is not None else "plain"] += 1
        return out

    def _off(self, reason: str) -> None:
        if self.mode == "on":
            raise refused(f"generation: {reason}")
        self.reason = reason
        if self.on_off is not None:
            self.on_off(reason)


def check_prefill(base, cache, ids, mask, positions, image_inputs, tolerance: float = 1e-4) -> float:
    """Next-token logits after the prompts: from their cache (plus the last token) and from one plain forward of the
    whole prompts, at the same positions. Raises ``Unsupported`` when they differ by more than ``tolerance``."""
    reader = read_only(cache)
    last = {k: v[:, -1:] for k, v in image_inputs.items() if k in SEQUENCE_KEYS}
    mine = base(input_ids=ids[:, -1:], attention_mask=mask, position_ids=positions[..., -1:], past_key_values=reader,
                **last).logits[:, -1]  # fmt: skip
    # the last position's logits only: at a published vocabulary the whole prompts' logits are GBs ([rows, P, V])
    last_only = {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(base.forward).parameters else {}
    ref = base(input_ids=ids, attention_mask=mask, position_ids=positions, **image_inputs, **last_only).logits[:, -1]
    diff = (mine - ref).abs().max().item()
    if not diff <= (tolerance if ref.dtype == torch.float32 else 5e-2):
        raise Unsupported(f"the next-token logits after a cached prompt differ from a plain forward's by {diff:.2e}")
    return diff


def through_ddp(model, fn):
    """``fn(module)`` as the one forward call of a DistributedDataParallel wrapper, so that DDP prepares its gradient
    all-reduce as for any forward (calling the wrapped module directly would leave the ranks' gradients apart)."""
    if not isinstance(model, DistributedDataParallel):
        return fn(model)
    inner = model.module
    own = "forward" in inner.__dict__
    saved = inner.__dict__.get("forward")  # TRL's fused-head forward on the instance, when there is one

    def restore():
        if own:
            inner.forward = saved
        else:
            inner.__dict__.pop("forward", None)

    def forward():
        restore()
        return fn(inner)

    inner.forward = forward
    try:
        return model()
    finally:
        restore()


def active_dropout(model) -> str | None:
    """What drops out in training, if anything: dropout modules with p > 0 (LoRA's among them) or config values."""
    ps = sorted({m.p for m in model.modules() if isinstance(m, torch.nn.Dropout) and m.p > 0})
    if ps:
        return "dropout modules with p = " + ", ".join(f"{p:g}" for p in ps)
    config = getattr(model, "config", None)
    stack = [("", config.to_dict())] if config is not None else []
    while stack:
        prefix, values = stack.pop()
        for key, value in values.items():
            key = str(key)
            if isinstance(value, dict):
                stack.append((f"{prefix}{key}.", value))
            elif ("dropout" in key or key.endswith("pdrop")) and isinstance(value, float) and value > 0:
                return f"{prefix}{key} = {value:g}"
    return None
