"""Processors for Qwen2.5-VL and LLaVA-OneVision (VARCO-VISION) without torchvision.

Their *image* processors have PIL backends in transformers 5.19 and run without torchvision; only their *video*
processors need it. Images-only training needs no video processor, so without torchvision these processors are
built without one.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path


def images_only_processor(cls, **kwargs):
    """Build processor ``cls`` with ``video_processor=None``. Without torchvision, transformers 5.19 cannot build
    Qwen2.5-VL's or LLaVA-OneVision's video processors (their image processors have PIL backends and work); its
    class check refuses ``None`` and ``save_pretrained`` (also called by the Trainer's checkpoints) trips on it.
    Images-only training needs no video processor."""
    from transformers.processing_utils import ProcessorMixin

    original = ProcessorMixin.check_argument_for_proper_class

    def check(self, name, arg):
        return None if name == "video_processor" and arg is None else original(self, name, arg)

    ProcessorMixin.check_argument_for_proper_class = check
    try:
        processor = cls(video_processor=None, **kwargs)
    finally:
        ProcessorMixin.check_argument_for_proper_class = original
    names = [a for a in cls.get_attributes() if a != "video_processor"]
    processor.get_attributes = lambda: names  # the instance's save loop skips the missing video processor
    return processor


# a processor class a published folder names (its remote code) -> the transformers class that now implements it
RENAMED_PROCESSORS = {"HCXVisionV2Processor": "HyperCLOVAXVisionV2Processor"}  # HyperCLOVAX-SEED-Think-32B


def processor_files(path: str) -> dict:
    """The folder's preprocessor_config.json and processor_config.json merged (the latter wins)."""
    from transformers.utils import cached_file

    config = {}
    for name in ("processor_config.json", "preprocessor_config.json"):
        file = cached_file(path, name, _raise_exceptions_for_missing_entries=False)
        if file:
            config = {**json.loads(Path(file).read_text(encoding="utf-8")), **config}
    return config


def renamed_processor(path: str) -> str | None:
    """The transformers class for a folder whose processor files name a published remote-code class that
    transformers now ships under another name (``RENAMED_PROCESSORS``), else None."""
    return RENAMED_PROCESSORS.get(str(processor_files(path).get("processor_class")))


def load_renamed_processor(path: str):
    """Build the transformers class that implements the published processor class, without its remote code (the
    folder's ``auto_map`` is not followed)."""
    import transformers
    from transformers.utils import is_torchvision_available

    cls = getattr(transformers, renamed_processor(path))
    if not is_torchvision_available():
        return load_images_only_processor(path, False)
    return cls.from_pretrained(path, trust_remote_code=False)


def load_images_only_processor(path: str, trust_remote_code: bool):
    """Qwen2.5-VL / LLaVA-OneVision (VARCO) / HyperCLOVAX-SEED-Think-32B processor without its video processor,
    which needs torchvision."""
    import transformers
    from transformers import AutoImageProcessor, AutoTokenizer
    from transformers.utils import is_torchvision_available

    if is_torchvision_available():
        return None
    config = processor_files(path)
    name = str(config.get("processor_class"))
    cls = getattr(transformers, RENAMED_PROCESSORS.get(name, name), None)
    if cls is None or "video_processor" not in cls.get_attributes():
        return None
    init = inspect.signature(cls.__init__).parameters
    kwargs = {k: v for k, v in config.items() if k in init and k not in cls.get_attributes()}
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    image_processor = AutoImageProcessor.from_pretrained(path, trust_remote_code=trust_remote_code)
    return images_only_processor(cls, image_processor=image_processor, tokenizer=tokenizer,
                                 chat_template=tokenizer.chat_template, **kwargs)  # fmt: skip
