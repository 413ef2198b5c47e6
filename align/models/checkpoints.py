"""Checking a folder's weights against a native model class before and while loading it (the HyperCLOVAX-SEED-Vision
and AIKU-style models): a folder that does not fill the model exactly is refused, naming the weights."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open

from align.errors import UserError


def _show(keys) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:12]) + (f" … ({len(keys)} in all)" if len(keys) > 12 else "") or "none"


def folder_keys(path: str) -> set[str]:
    """The weight names in the folder's safetensors files (headers only)."""
    folder = Path(path)
    index = folder / "model.safetensors.index.json"
    files = (
        sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.exists() else ["model.safetensors"]
    )
    found = set()
    for name in files:
        with safe_open(str(folder / name), "pt") as f:
            found |= set(f.keys())
    return found


def checkpoint_keys(model_cls, config_cls, path: str, tied_head: str, config=None) -> dict:
    """The folder's weight names against the model's: ``{"missing_keys": [...], "unexpected_keys": [...]}`` (read
    from the safetensors headers, the model built on the meta device: no weights loaded). ``tied_head`` is not
    expected in the folder when the config ties the output layer to the embeddings. ``config``: the one the model
    will be built from (default: the folder's)."""
    found = folder_keys(path)
    with torch.device("meta"):
        model = model_cls(config if config is not None else config_cls.from_pretrained(path))
    expected = set(model.state_dict())
    tied = {tied_head} if model.config.tie_word_embeddings else set()
    return {"missing_keys": sorted(expected - found - tied), "unexpected_keys": sorted(found - expected)}


def load_checked(model_cls, path: str, what: str, hint: str, **kwargs):
    """``model_cls.from_pretrained`` that raises ``UserError`` ("{path} {what}: … missing, … unexpected, … of another
    shape", ``hint``) unless the folder's weights fill the model exactly."""
    model, info = model_cls.from_pretrained(path, output_loading_info=True, **kwargs)
    missing, unexpected = list(info.get("missing_keys") or []), list(info.get("unexpected_keys") or [])
    mismatched = [str(m[0]) if isinstance(m, tuple) else str(m) for m in info.get("mismatched_keys") or []]
    if missing or unexpected or mismatched:
        raise UserError(
            f"{path} {what}: {len(missing)} missing ({_show(missing)}), {len(unexpected)} unexpected "
            f"({_show(unexpected)}), {len(mismatched)} of another shape ({_show(mismatched)})",
            hint,
        )
    return model
