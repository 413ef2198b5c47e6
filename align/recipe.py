"""Recipes: plain YAML validated into typed objects.

    name: quickstart
    base: other.yaml              # optional: start from another recipe (path relative to this file)
    model: {path: tiny-korean-vlm, lora: {r: 16}}
    data: {source: synthetic, train_size: 2000}
    rewards: [{name: accuracy}]
    stages:
      - type: sft
        args: {learning_rate: 1.0e-3}   # passed to trl.SFTConfig, checked against its fields

Command-line overrides ``key.path=value`` win over the file; list items are addressed by index or by stage
name (``stages.sft.args.learning_rate=1e-4`` or just ``sft.args.learning_rate=1e-4``). Unknown keys and wrong
types are errors naming the file, the key path and the closest valid key.
"""

from __future__ import annotations

import dataclasses
import importlib
import typing
from pathlib import Path
from typing import Annotated, Any, Union

import yaml
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from align.errors import RecipeError, did_you_mean
from align.spec import (  # noqa: F401 - the recipe's blocks, importable from here as before
    BenchmarkSpec,
    ComposeSpec,
    DataSpec,
    EvalHookSpec,
    EvalSpec,
    JudgeSpec,
    LaunchSpec,
    LoraSpec,
    ModelSpec,
    Recipe,
    RewardSpec,
    RolloutSpec,
    SampledEvalSpec,
    StageSpec,
    Strict,
)
from align.stages import STAGES


def stage_configs() -> dict[str, type[StageSpec]]:
    return {name: stage.config for name, stage in STAGES.items()}


def _stage_union():
    classes = tuple(stage_configs().values())
    return Annotated[Union[classes], Field(discriminator="type")]  # noqa: UP007


def _build_recipe_class():
    """Recipe with `stages` typed as the union of the registered stage configs."""
    union = _stage_union()
    return type(
        "Recipe",
        (Recipe,),
        {"__annotations__": {"stages": list[union]}, "stages": Field(default_factory=list), "__module__": __name__},
    )


# ---------------------------------------------------------------------------------------------------- loading


def _read_yaml(path: Path) -> dict:
    if not path.exists():
        raise RecipeError(str(path), None, "file not found", "check the path; recipes live in recipes/")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else None
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise RecipeError(str(path), where, f"malformed YAML: {problem}", "fix the indentation or quoting there")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RecipeError(str(path), None, f"expected a mapping of keys at the top, found {type(data).__name__}")
    return data


def deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _load_with_bases(path: Path, chain: tuple[Path, ...] = ()) -> dict:
    path = path.resolve()
    if path in chain:
        raise RecipeError(str(path), "base", "recipes extend each other in a cycle: " + " -> ".join(map(str, chain)))
    data = _read_yaml(path)
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise RecipeError(str(path), "base", "must be a path to another recipe")
    base_path = (path.parent / base) if not Path(base).is_absolute() else Path(base)
    return deep_merge(_load_with_bases(base_path, chain + (path,)), data)


def parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise RecipeError(None, text, "an override must look like key.path=value", "e.g. sft.args.learning_rate=1e-4")
    key, value = text.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise RecipeError(None, text, "empty key in override")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        parsed = value
    if isinstance(parsed, str):  # YAML 1.1 reads 5e-4 as a string
        try:
            parsed = float(parsed) if any(c.isdigit() for c in parsed) else parsed
        except ValueError:
            pass
    return parts, parsed


def apply_override(data: dict, parts: list[str], value: Any, original: str = "") -> None:
    top_fields = set(Recipe.model_fields)
    stages = data.get("stages") or []
    if parts[0] not in top_fields and any(_stage_name(s) == parts[0] for s in stages if isinstance(s, dict)):
        parts = ["stages", *parts]
    node: Any = data
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            idx = _list_index(node, part, original)
            if last:
                node[idx] = value
            else:
                node = node[idx]
            continue
        if not isinstance(node, dict):
            raise RecipeError(None, original, f"'{'.'.join(parts[:i])}' is not a mapping, cannot set '{part}'")
        if last:
            node[part] = value
        else:
            if node.get(part) is None:
                node[part] = {}
            node = node[part]


def _stage_name(stage: dict) -> str:
    return str(stage.get("name") or stage.get("type"))


def _list_index(items: list, part: str, original: str) -> int:
    if part.lstrip("-").isdigit():
        idx = int(part)
        if -len(items) <= idx < len(items):
            return idx
        raise RecipeError(None, original, f"index {idx} is out of range (the list has {len(items)} items)")
    for idx, item in enumerate(items):
        if isinstance(item, dict) and _stage_name(item) == part:
            return idx
    names = [_stage_name(s) for s in items if isinstance(s, dict)]
    raise RecipeError(None, original, f"no stage named '{part}'", did_you_mean(part, names))


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = (), check_args: bool = True):
    """Read, merge, override and validate a recipe. Returns a Recipe object with ``source`` set."""
    path = Path(path)
    data = _load_with_bases(path)
    for text in overrides:
        parts, value = parse_override(text)
        try:
            apply_override(data, parts, value, text)
        except RecipeError as e:
            raise RecipeError(f"override {text!r}", None, e.message.split(": ", 2)[-1], e.hint) from None
    recipe = validate(data, str(path))
    if check_args:
        check_trainer_args(recipe, str(path))
    return recipe


def validate(data: dict, file: str | None = None):
    data = dict(data)
    data.setdefault("name", Path(file).stem if file else "recipe")
    for i, stage in enumerate(data.get("stages") or []):
        if isinstance(stage, dict):
            if "type" not in stage:
                raise RecipeError(file, f"stages[{i}]", "missing 'type'", f"one of: {', '.join(stage_configs())}")
            if stage["type"] not in stage_configs():
                raise RecipeError(
                    file, f"stages[{i}].type", f"unknown stage type '{stage['type']}'",
                    did_you_mean(stage["type"], stage_configs()),
                )  # fmt: skip
            stage.setdefault("name", stage["type"])
    cls = _build_recipe_class()
    try:
        recipe = cls.model_validate(data)
    except ValidationError as e:
        raise _to_recipe_error(e, data, file, cls) from None
    object.__setattr__(recipe, "__source__", file)
    return recipe


def _unwrap_model(annotation, node) -> type[BaseModel] | None:
    """Find the pydantic model a value of this annotation is validated as (follows list, Optional, unions)."""
    origin = typing.get_origin(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if origin is Annotated:
        return _unwrap_model(typing.get_args(annotation)[0], node)
    if origin in (Union, getattr(__import__("types"), "UnionType", Union)):
        models = [a for a in typing.get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
        if isinstance(node, dict) and "type" in node:
            for m in models:
                tf = m.model_fields.get("type")
                if tf is not None and node["type"] in typing.get_args(tf.annotation):
                    return m
        return models[0] if len(models) == 1 else None
    return None


def _to_recipe_error(err: ValidationError, data: dict, file: str | None, cls) -> RecipeError:
    e = err.errors()[0]
    loc = list(e["loc"])
    # pydantic puts the discriminator tag in the location of tagged unions; drop it
    path_parts, model, node = [], cls, data
    i = 0
    while i < len(loc):
        part = loc[i]
        if isinstance(part, int):
            stage_label = ""
            if (
                isinstance(node, list)
                and part < len(node)
                and isinstance(node[part], dict)
                and path_parts[-1:] == ["stages"]
            ):
                stage_label = f"({_stage_name(node[part])})"
            path_parts[-1] = f"{path_parts[-1]}[{part}]{stage_label}" if path_parts else f"[{part}]"
            node = node[part] if isinstance(node, list) and part < len(node) else None
            if i + 1 < len(loc) and isinstance(node, dict) and loc[i + 1] == node.get("type"):
                i += 1  # skip the discriminator tag
            i += 1
            continue
        field = model.model_fields.get(part) if model is not None else None
        path_parts.append(str(part))
        next_node = node.get(part) if isinstance(node, dict) else None
        if field is not None:
            ann = field.annotation
            inner = _unwrap_model(ann, next_node)
            if inner is None and typing.get_origin(ann) is list:
                args = typing.get_args(ann)
                inner = _unwrap_model(args[0], next_node[0] if isinstance(next_node, list) and next_node else None)
                if isinstance(next_node, list) and i + 1 < len(loc) and isinstance(loc[i + 1], int):
                    idx = loc[i + 1]
                    item = next_node[idx] if idx < len(next_node) else None
                    inner = _unwrap_model(args[0], item)
            parent_model, model = model, inner
        else:
            parent_model, model = model, None
        node = next_node
        i += 1
    key = ".".join(path_parts).replace(".[", "[")
    if e["type"] == "extra_forbidden":
        valid = list(parent_model.model_fields) if parent_model is not None else []
        return RecipeError(file, key, "unknown key", did_you_mean(loc[-1], valid))
    if e["type"] == "missing":
        return RecipeError(file, key, "required key is missing")
    value = e.get("input")
    shown = repr(value) if not isinstance(value, dict) else "a mapping"
    msg = e["msg"].removeprefix("Value error, ")
    return RecipeError(file, key or None, f"{msg} (got {shown})")


# ------------------------------------------------------------------------------------ TRL config pass-through


def import_object(spec: str):
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)


def trainer_arg_fields(config_cls) -> dict[str, Any]:
    hints = typing.get_type_hints(config_cls)
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(config_cls) if f.init}


def check_trainer_args(recipe, file: str | None = None) -> None:
    """Check every stage's ``args`` against the fields and types of its TRL config class."""
    for i, stage in enumerate(recipe.stages):
        if not stage.trl_config or not stage.args:  # nothing to check: TRL (and torch) stay unloaded
            continue
        cls = import_object(stage.trl_config)
        fields = trainer_arg_fields(cls)
        for key, value in stage.args.items():
            where = f"stages[{i}]({stage.name}).args.{key}"
            if key in stage.owned_args:
                raise RecipeError(file, where, "is set by the workbench (stage outputs live in the run directory)")
            if key not in fields:
                raise RecipeError(file, where, f"not a field of {cls.__name__}", did_you_mean(key, fields))
            try:
                stage.args[key] = TypeAdapter(fields[key]).validate_python(value)  # e.g. "5e-4" -> 0.0005
            except ValidationError as ve:
                msg = ve.errors()[0]["msg"]
                raise RecipeError(file, where, f"{msg} (got {value!r}; {cls.__name__} expects {fields[key]})")
            except Exception:  # noqa: BLE001, S110 - exotic annotations: TRL validates them itself
                pass


def dump_recipe(recipe) -> str:
    data = recipe.model_dump(mode="json")
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)
