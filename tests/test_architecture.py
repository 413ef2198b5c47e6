"""The package's structure, as docs/architecture.md describes it: layers that only point down, internal imports at
the top of modules, one stage contract, families described by their table entry."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("align", "rewards", "rollouts")

# Lowest first. A module may import modules of its own layer or of the layers below it.
LAYERS = [
    ("foundation", ("align.errors", "align.io", "align.chat", "align.console")),
    ("data", ("align.data",)),
    ("models", ("align.models", "align.shared_prompt")),
    ("recipe blocks", ("align.spec", "align.benchmarks.registry")),
    ("engines and rewards", ("rollouts", "rewards")),
    ("training", ("align.rundir", "align.distributed", "align.resume", "align.evaluate", "align.eval_trackers",
                  "align.benchmarks", "align.trl_extensions", "align.training")),
    ("stages", ("align.stages",)),
    ("entry points", ("align.recipe", "align.compare", "align.report", "align.pipeline", "align.launcher",
                      "align.cli")),
]  # fmt: skip
# Modules whose internal imports may sit inside functions: each CLI command loads only what it needs.
LOCAL_IMPORTS_ALLOWED = ("align.cli",)
# Single imports allowed inside a function, with why: importing the target loads heavy libraries or registers classes
# with transformers, so it happens on first use rather than when the package is imported.
LOCAL_IMPORT_EXCEPTIONS = {
    ("align.models", "align.models.hcx_vision"): "registers our native model classes with transformers' Auto classes",
    ("align.models.tiny.hyperclovax_vision", "align.models.hcx_vision"): "the native HyperCLOVAX classes load "
    "transformers",
    ("align.models", "align.models.aiku_vlm"): "registers our native model classes with transformers' Auto classes",
    ("align.models.compose", "align.models.aiku_vlm"): "the AIKU-style model classes load transformers",
    (
        "align.models.hcx_vision.processing",
        "align.models.hcx_vision.published",
    ): "published builds the processor classes; from_pretrained (vLLM's way in) hands the folder back to it",
    ("rewards.korean", "rewards.answer"): "the answer reader imports Korean number words from here",
    # torch and transformers stay out of the light paths (recipe validation, plans): test_light_paths_leave_torch_...
    ("align.trl_extensions", "align.shared_prompt"): "the shared-prompt model pieces load torch and transformers",
    ("align.trl_extensions", "rollouts.hf"): "the transformers engine loads torch",
    ("rollouts", "rollouts.hf"): "the transformers engine loads torch",
    ("rollouts.vllm_engine", "rollouts.hf"): "the transformers engine loads torch",
}


def layer_of(module: str) -> int:
    best, found = -1, None
    for i, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, found = len(prefix), i
    if found is None:
        raise AssertionError(f"{module} belongs to no layer: add it to LAYERS and docs/architecture.md")
    return found


def modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            if "assets" in path.parts:  # remote-code model files the tests load as a model's own code
                continue
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            out[name] = path
    return out


def internal_imports(path: Path, known: dict[str, Path]):
    """(target module, line, inside a function) for every import of the project's own modules."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module
                       for a in node.names]  # fmt: skip
        else:
            continue
        inside, p = False, node
        while p in parents:
            p = parents[p]
            inside = inside or isinstance(p, (ast.FunctionDef, ast.AsyncFunctionDef))
        for target in targets:
            if target.split(".")[0] in PACKAGES:
                yield target, node.lineno, inside


def test_layers_only_point_down():
    known = modules()
    upward = []
    for name, path in known.items():
        for target, line, _ in internal_imports(path, known):
            if layer_of(target) > layer_of(name):
                upward.append(f"{path.relative_to(ROOT)}:{line}: {name} ({LAYERS[layer_of(name)][0]}) imports "
                              f"{target} ({LAYERS[layer_of(target)][0]})")  # fmt: skip
    assert not upward, "imports that point up a layer:\n" + "\n".join(upward)


def test_internal_imports_at_module_top():
    known = modules()
    local = [f"{path.relative_to(ROOT)}:{line}: {target}" for name, path in known.items()
             if name not in LOCAL_IMPORTS_ALLOWED for target, line, inside in internal_imports(path, known)
             if inside and (name, target) not in LOCAL_IMPORT_EXCEPTIONS]  # fmt: skip
    assert not local, "internal imports inside functions:\n" + "\n".join(local)


def test_every_stage_declares_the_contract():
    from align.spec import StageSpec
    from align.stages import STAGES
    from align.stages.base import Stage

    stage_files = {p.stem for p in (ROOT / "align" / "stages").glob("*.py")} - {"__init__", "base", "preference"}
    assert len(STAGES) == len(stage_files), (
        f"a stage module is not registered in align/stages/__init__.py: {stage_files}"
    )
    for name, stage in STAGES.items():
        assert isinstance(stage, Stage) and stage.type == name
        assert issubclass(stage.config, StageSpec) and stage.config.model_fields["type"].default == name
        assert callable(stage.run)


def test_family_choices_come_from_the_table():
    from align.cli import build_parser
    from align.models.families import FAMILIES
    from align.models.tiny import family_models
    from align.spec import ModelSpec

    assert set(FAMILIES) <= set(family_models()), "every family has a tiny model (TINY_MODELS, align/models/tiny/)"
    parser = build_parser()
    model = next(a for a in parser._actions if a.dest == "command").choices["model"]
    build = next(a for a in model._actions if a.dest == "model_command").choices["build-tiny"]
    family_option = next(a for a in build._actions if a.dest == "family")
    assert tuple(family_option.choices) == tuple(FAMILIES)
    described = ModelSpec.model_fields["family"].description
    assert all(name in described for name in FAMILIES)


def test_test_models_load_on_first_use():
    """align.models holds the tiny-model registry, not the builders (no builder module loads with it); every entry
    names a builder that imports."""
    assert _loaded("import align.models", "align.models.tiny.") == []
    from align.models.tiny import TINY_MODELS, builder

    assert all(callable(builder(name)) for name in TINY_MODELS)


@pytest.mark.parametrize(
    "family",
    [
        "hyperclovax_text",
        "hyperclovax_vision",
        "varco_vision",
        "qwen2_5_vl",
        "hyperclovax_think",
        "hyperclovax_vision_v2",
        "exaone",
        "kanana_v",
        "aiku_vlm",
    ],
)
def test_recognition_is_driven_by_the_table_entry(family):
    """Each family is recognised from the fields of its own entry, and only from them."""
    from types import SimpleNamespace

    from align.models.families import FAMILIES, detect

    entry = FAMILIES[family]
    arch = entry.architectures[:1] or ["SomethingForCausalLM"]
    config = SimpleNamespace(model_type=entry.model_types[0] if entry.model_types else "x", architectures=arch)
    if entry.vision:
        config.vision_config = {}
    assert detect(config, SimpleNamespace(get_vocab=lambda: dict.fromkeys(entry.needs_tokens, 0))) is entry
    if entry.needs_tokens:  # without its tokens it is the model it is built on, a generic one
        assert detect(config, SimpleNamespace(get_vocab=dict)).name == "generic"


HEAVY = ("torch", "transformers", "trl")
LIGHT_RECIPE = """name: light
rewards: [{name: accuracy}]
stages:
  - {name: sft, type: sft}
  - {name: rft, type: rft}
  - {name: grpo, type: grpo, select_prompts: {enabled: true}}
"""


def _loaded(code: str, *names: str) -> list[str]:
    """The modules among ``names`` (a name ending in '.': any module under it) that a fresh interpreter has loaded
    after ``code`` (what it printed last)."""
    import json
    import os
    import subprocess
    import sys

    probe = (f"{code}\nimport json, sys\nprint(json.dumps(sorted(m for m in sys.modules for n in {names!r} "
             "if m == n or (n.endswith('.') and m.startswith(n)))))")  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=ROOT, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_light_paths_leave_torch_unloaded(tmp_path):
    """Validating a recipe, planning a launch and ``align run --dry-run`` (a recipe whose stages set no TRL ``args``)
    load neither torch nor transformers (docs/architecture.md, Layers)."""
    assert _loaded("import align.recipe, align.launcher", *HEAVY) == []
    recipe = tmp_path / "light.yaml"
    recipe.write_text(LIGHT_RECIPE, encoding="utf-8")
    code = f"from align.cli import main\nassert main(['run', {str(recipe)!r}, '--dry-run']) == 0"
    assert _loaded(code, *HEAVY) == []
