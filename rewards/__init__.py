"""Reward registry.

A reward is any function with TRL's GRPO signature::

    def reward(prompts, completions, **kwargs) -> list[float | None]

``kwargs`` holds every dataset column (``answer``, ``task``, ``images`` …) and, under TRL, ``completion_ids`` and
``trainer_state``. None means "does not apply to this sample". A recipe names a reward as

* a built-in name (``math_accuracy``; ``align rewards list`` shows them all),
* a name registered by an installed package under the entry-point group ``korean_vlm_align.rewards``,
* ``package.module:function`` (``trl.rewards:accuracy_reward`` works unchanged), or
* ``path/to/file.py:function`` (relative to the recipe's folder, then to the working directory),

with optional ``args`` bound as keyword arguments and a ``weight``.

Error policy: a reward that raises on a batch is retried sample by sample; samples that still raise score None and
are counted (the first error of each reward is printed with the row's id). When more than ``max_error_rate`` of a
reward's samples have failed (after at least 20), the stage stops with a clear error. Returning a list of the
wrong length is always an error.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
import sys
import threading
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from align.errors import UserError, did_you_mean
from rewards.answer import final, hedge_reason, number_answer
from rewards.code_rewards import extract_code, hack_proof_report
from rewards.korean import first_number, normalize_korean
from rewards.math_rewards import as_number, extract_math_answer
from rewards.vision import edit_distance, parse_boxes, parse_choice

ENTRY_POINT_GROUP = "korean_vlm_align.rewards"

BUILTIN: dict[str, str] = {
    "accuracy": "rewards.tasks:accuracy",
    "math_accuracy": "rewards.math_rewards:math_accuracy",
    "count_accuracy": "rewards.vision:count_accuracy",
    "choice_accuracy": "rewards.vision:choice_accuracy",
    "bbox_iou": "rewards.vision:bbox_iou",
    "ocr_accuracy": "rewards.vision:ocr_accuracy",
    "exact_match": "rewards.vision:exact_match",
    "korean_consistency": "rewards.korean:korean_consistency",
    "code_tests": "rewards.code_rewards:code_tests",
    "think_answer_format": "rewards.formatting:think_answer_format",
    "soft_overlong": "rewards.formatting:soft_overlong",
    "reasoning_format": "rewards.reasoning:reasoning_format",
    "length_band": "rewards.reasoning:length_band",
    "repetition_penalty": "rewards.formatting:repetition_penalty",
    "reward_model": "rewards.reward_model:reward_model",
    # open-ended descriptions against the scene (the describe task; rewards/describe.py)
    "describe_f1": "rewards.describe:describe_f1",
    "describe_precision": "rewards.describe:describe_precision",
    "describe_recall": "rewards.describe:describe_recall",
    "cider_d": "rewards.describe:cider_d",
    "description_words": "rewards.describe:description_words",
    "repetition_rate": "rewards.describe:repetition_rate",
}


class RewardError(UserError):
    """A reward could not be resolved or misbehaved (the message names it)."""


def _entry_points() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available() -> dict[str, str]:
    """Every reward name that resolves without a path: built-ins and installed plugins."""
    names = dict(BUILTIN)
    for name, ep in _entry_points().items():
        names.setdefault(name, ep.value)
    return names


def _import_target(target: str):
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def _load_file(path: Path, attr: str, name: str):
    module_name = f"_align_user_rewards_{abs(hash(str(path)))}"
    module = sys.modules.get(module_name)
    if module is None:
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as e:
            del sys.modules[module_name]
            raise RewardError(f"reward '{name}': importing {path} failed: {type(e).__name__}: {e}") from e
    if not hasattr(module, attr):
        funcs = [n for n, v in vars(module).items() if inspect.isfunction(v) and not n.startswith("_")]
        raise RewardError(f"reward '{name}': {path} has no function '{attr}' (it has: {', '.join(funcs) or 'none'})")
    return getattr(module, attr)


def load_function(name: str, base_dir: str | Path | None = None):
    """Resolve a reward name to a callable (see the module docstring for the forms)."""

    if name in BUILTIN:
        return _import_target(BUILTIN[name])
    eps = _entry_points()
    if name in eps:
        return eps[name].load()
    if ":" in name:
        target, _, attr = name.rpartition(":")
        if target.endswith(".py") or "/" in target:
            candidates = [Path(base_dir) / target] if base_dir else []
            candidates.append(Path(target))
            for path in candidates:
                if path.exists():
                    return _load_file(path.resolve(), attr, name)
            raise RewardError(f"reward '{name}': file {target} not found (looked in {', '.join(map(str, candidates))})")
        try:
            module = importlib.import_module(target)
        except ImportError as e:
            raise RewardError(f"reward '{name}': cannot import module '{target}': {e}") from e
        if not hasattr(module, attr):
            raise RewardError(f"reward '{name}': module '{target}' has no attribute '{attr}'")
        return getattr(module, attr)
    raise RewardError(
        f"unknown reward '{name}'; {did_you_mean(name, available())}",
    )


class Reward:
    """A resolved reward: the function with its bound args, its weight, and error accounting.

    Calling it has TRL's reward signature, so a ``Reward`` can be handed to ``GRPOTrainer`` directly. With a
    ``reasoning`` format set (a stage training a reasoning model does so) and ``completion_ids`` passed (TRL passes
    them), completions are rewritten as ``<think>REASONING</think>ANSWER`` from their ids and the function also gets
    ``reasoning_tokens`` and ``answer_tokens`` (``align/models/reasoning.py``)."""

    reasoning = None  # an align.models.reasoning.ReasoningFormat

    def __init__(self, name: str, fn, weight: float = 1.0, args: dict | None = None, max_error_rate: float = 0.1):
        self.name, self.fn, self.weight, self.args = name, fn, weight, dict(args or {})
        self.max_error_rate = max_error_rate
        self.calls = self.samples = self.errors = 0
        self.first_error: str | None = None
        self._lock = threading.Lock()
        self.__name__ = name.rsplit(":", 1)[-1].replace("/", "_")
        functools.update_wrapper(self, fn, assigned=("__doc__", "__module__"), updated=())

    def _call(self, prompts, completions, kwargs):
        out = self.fn(prompts=prompts, completions=completions, **self.args, **kwargs)
        if out is None or not hasattr(out, "__len__"):
            raise RewardError(f"reward '{self.name}' returned {type(out).__name__}, expected a list of floats")
        out = list(out)
        if len(out) != len(completions):
            raise RewardError(
                f"reward '{self.name}' returned {len(out)} scores for {len(completions)} completions; "
                "it must return one float (or None) per completion"
            )
        return [None if v is None else float(v) for v in out]

    def __call__(self, prompts=None, completions=None, **kwargs) -> list[float | None]:
        n = len(completions)
        ids = kwargs.get("completion_ids")
        if self.reasoning is not None and ids is not None and len(ids) == n:
            completions, counts = self.reasoning.rewrite(completions, ids)
            kwargs = {**kwargs, **counts}
        with self._lock:
            self.calls += 1
            self.samples += n
        try:
            return self._call(prompts, completions, kwargs)
        except RewardError:
            raise
        except Exception:  # noqa: BLE001, S110 - isolate the failing samples
            pass
        out: list[float | None] = []
        for i in range(n):
            sub = {k: [v[i]] if isinstance(v, list) and len(v) == n else v for k, v in kwargs.items()}
            try:
                out.extend(self._call([prompts[i]] if prompts is not None else None, [completions[i]], sub))
            except RewardError:
                raise
            except Exception as e:  # noqa: BLE001
                out.append(None)
                self._record_error(e, sub)
        return out

    def _record_error(self, exc: Exception, row: dict) -> None:
        with self._lock:
            self.errors += 1
            if self.first_error is None:
                row_id = (row.get("id") or [None])[0] if isinstance(row.get("id"), list) else row.get("id")
                self.first_error = f"{type(exc).__name__}: {exc}" + (f" (row {row_id})" if row_id else "")
                print(f"[reward {self.name}] raised on a sample, scored None: {self.first_error}", file=sys.stderr)
            if self.samples >= 20 and self.errors / self.samples > self.max_error_rate:
                raise RewardError(
                    f"reward '{self.name}' failed on {self.errors} of {self.samples} samples "
                    f"(more than {self.max_error_rate:.0%}); first error: {self.first_error}"
                )

    def stats(self) -> dict[str, Any]:
        return {"calls": self.calls, "samples": self.samples, "errors": self.errors, "first_error": self.first_error}

    def __repr__(self) -> str:
        return f"Reward({self.name!r}, weight={self.weight}, args={self.args})"


def resolve(spec, base_dir: str | Path | None = None) -> Reward:
    """A ``RewardSpec`` (or dict with name/weight/args, or a plain name) to a ``Reward``."""
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, dict):
        spec = spec.model_dump()
    fn = load_function(spec["name"], base_dir)
    if not callable(fn):
        raise RewardError(f"reward '{spec['name']}' is not callable")
    if spec.get("args"):
        params = inspect.signature(fn).parameters
        takes_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        unknown = [k for k in spec["args"] if k not in params]
        if unknown and not takes_kwargs:
            raise RewardError(
                f"reward '{spec['name']}' has no parameter {', '.join(map(repr, unknown))} "
                f"(it takes: {', '.join(p for p in params if p not in ('prompts', 'completions', 'kwargs'))})"
            )
    return Reward(spec["name"], fn, float(spec.get("weight", 1.0)), spec.get("args"))


def resolve_all(specs, base_dir: str | Path | None = None) -> list[Reward]:
    return [resolve(s, base_dir) for s in specs]


def explain(name: str, completion: str, answer: str | None, task: str | None = None, **row) -> dict[str, Any]:
    """What the built-in rewards extract from a completion, to see why a reward gave 0 (the final answer, the answer
    markers when there are several, and why it counts as a hedge)."""

    if name == "code_tests":
        tests = row.get("tests")
        return {"code": extract_code(completion)[:200], "tests": hack_proof_report(tests, row.get("entry_point"))
                if tests is not None else None}  # fmt: skip
    f = final(completion)
    info: dict[str, Any] = {"final_answer": f.text, "final_answer_from": f.source}
    if len(f.markers) > 1:
        info["answer_markers"] = f.markers
    kind_task = task or {"math_accuracy": "math", "count_accuracy": "count", "choice_accuracy": "choice",
                         "bbox_iou": "bbox"}.get(name)  # fmt: skip
    info["hedge"] = hedge_reason(completion, kind_task, answer)
    if name in ("math_accuracy", "accuracy"):
        ext = extract_math_answer(completion)
        info.update(math_extracted=ext, math_number=as_number(ext),
                    answer_extracted=extract_math_answer(answer or ""))  # fmt: skip
    if name in ("count_accuracy", "accuracy"):
        info.update(count=number_answer(completion)[0], answer_count=first_number(answer or ""))
    if name == "choice_accuracy":
        info.update(choice=parse_choice(completion), answer_choice=parse_choice(answer or ""))
    if name in ("bbox_iou", "accuracy"):
        info.update(boxes=parse_boxes(completion), answer_boxes=parse_boxes(answer or ""))
    if name in ("exact_match", "accuracy"):
        info.update(normalized=normalize_korean(f.text), answer_normalized=normalize_korean(answer or ""))
    if name == "ocr_accuracy" and answer:
        info.update(edit_distance=edit_distance(f.text.replace(" ", ""), answer.replace(" ", "")))
    return {k: v for k, v in info.items() if v not in (None, [], "")}


def doc_line(fn) -> str:
    doc = inspect.getdoc(fn) or ""
    return doc.split("\n\n")[0].replace("\n", " ")


def bind_stage_outputs(specs, outputs: dict[str, str], skip_missing: bool = False) -> list:
    """Reward specs whose args say ``stage:NAME`` get the folder stage NAME of this run produced (e.g. the reward
    model an ``rm`` stage trained). A NAME not produced yet is an error, or, with ``skip_missing`` (eval metrics
    before that stage has run), leaves the spec out."""
    bound = []
    for spec in specs:
        args, missing = dict(spec.args), None
        for key, value in args.items():
            if isinstance(value, str) and value.startswith("stage:"):
                name = value.removeprefix("stage:")
                if name in outputs:
                    args[key] = outputs[name]
                else:
                    missing = (key, value, name)
        if missing is None:
            bound.append(spec.model_copy(update={"args": args}))
        elif not skip_missing:
            key, value, name = missing
            raise UserError(f"reward {spec.name}: args.{key} is '{value}' but no earlier stage is named '{name}'",
                            f"stages before this one: {', '.join(outputs) or 'none'}")  # fmt: skip
    return bound
