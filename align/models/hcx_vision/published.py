"""HyperCLOVAX-SEED-Vision's processor from a folder as the hub publishes it, without its remote code.

The published folder names remote-code classes that transformers refuses without ``trust_remote_code``:

* first revision: ``preprocessor_config.json`` with ``processor_class`` and ``image_processor_type``
  ``HCXVisionProcessor`` and an ``auto_map`` to ``preprocessor.HCXVisionProcessor``;
* later revision: ``preprocessor_config.json`` naming ``HCXImageProcessor`` (``image_processing_hyperclovax``) and a
  ``processor_config.json`` naming ``HCXProcessor`` (``processing_hyperclovax``).

``load_published(path)`` reads those files (and the form this workbench saves: ``processor_config.json`` with the
image processor's settings under ``image_processor``), checks that the class names are ones this implementation
stands for, and builds ``HCXVisionProcessor`` from the settings and the folder's tokenizer and chat template. A
missing file or an unknown class is a ``UserError`` naming the file, the key and the class.
"""

from __future__ import annotations

import json
from pathlib import Path

from align.errors import UserError
from align.models.hcx_vision.processing import HCXVisionImageProcessor, HCXVisionProcessor

# class names a folder may give for what this implementation provides (the published ones, then ours)
IMAGE_PROCESSOR_NAMES = ("HCXVisionProcessor", "HCXImageProcessor", "HCXVisionImageProcessor")
PROCESSOR_NAMES = ("HCXVisionProcessor", "HCXProcessor")
HINT = ("a HyperCLOVAX-SEED-Vision folder needs preprocessor_config.json (first revision: HCXVisionProcessor; later: "
        "HCXImageProcessor with processor_config.json naming HCXProcessor) and its tokenizer files, as published; "
        "docs/hyperclovax_vision.md")  # fmt: skip


def _read(path: str, name: str) -> dict | None:
    from transformers.utils import cached_file

    file = cached_file(path, name, _raise_exceptions_for_missing_entries=False)
    if not file:
        return None
    try:
        return json.loads(Path(file).read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UserError(f"{path}/{name} is not valid JSON: {e}", HINT) from None


def _check(path: str, name: str, data: dict, key: str, known: tuple[str, ...]) -> None:
    value = data.get(key)
    if value is not None and value not in known:
        raise UserError(
            f"{path}/{name}: {key} '{value}' is not a HyperCLOVAX-SEED-Vision processor class this workbench "
            f"implements ({', '.join(known)})",
            HINT,
        )


def image_processor_settings(path: str) -> tuple[dict, dict]:
    """(the image processor's settings, the processor's own settings) from the folder's processor files."""
    preprocessor = _read(path, "preprocessor_config.json")
    processor = _read(path, "processor_config.json") or {}
    _check(path, "processor_config.json", processor, "processor_class", PROCESSOR_NAMES)
    if preprocessor is None:
        preprocessor = processor.get("image_processor")
        if not isinstance(preprocessor, dict):
            raise UserError(
                f"{path} has no preprocessor_config.json (and its processor_config.json holds no image_processor "
                "settings): HyperCLOVAX-SEED-Vision's image processor cannot be built, and this vision model will "
                "not load as a text-only tokenizer",
                HINT,
            )
        source = "processor_config.json"
    else:
        source = "preprocessor_config.json"
        _check(path, source, preprocessor, "processor_class", PROCESSOR_NAMES + IMAGE_PROCESSOR_NAMES)
    _check(path, source, preprocessor, "image_processor_type", IMAGE_PROCESSOR_NAMES)
    return preprocessor, processor


def load_published(path: str):
    """``HCXVisionProcessor`` for the folder (or hub id) ``path``, from its published processor files."""
    from transformers import AutoTokenizer

    settings, processor_settings = image_processor_settings(path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: the tokenizer files do not load: {type(e).__name__}: {e}", HINT) from None
    settings = {k: v for k, v in settings.items() if k != "auto_map"}
    image_processor = HCXVisionImageProcessor(**settings)
    kwargs = {k: processor_settings[k] for k in ("max_video_frames",) if k in processor_settings}
    return HCXVisionProcessor(image_processor=image_processor, tokenizer=tokenizer,
                              chat_template=tokenizer.chat_template, **kwargs)  # fmt: skip
