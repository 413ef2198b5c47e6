"""Recipe schema: validation, error messages, base recipes, overrides, TRL args pass-through."""

from __future__ import annotations

import subprocess
import sys

import pytest

from align.errors import RecipeError
from align.recipe import load_recipe
from tests.conftest import ROOT, write_recipe

MINIMAL = """
name: t
stages:
  - type: sft
    args: {learning_rate: 1.0e-3, max_steps: 3}
"""


def test_minimal_recipe_has_defaults(tmp_path):
    r = load_recipe(write_recipe(tmp_path / "r.yaml", MINIMAL))
    assert r.model.path == "tiny-korean-vlm"
    assert r.data.source == "synthetic"
    assert [s.name for s in r.stages] == ["sft"]
    assert r.stages[0].args == {"learning_rate": 1e-3, "max_steps": 3}
    assert [x.name for x in r.rewards] == ["accuracy"]


def test_bare_on_off_in_yaml_are_option_names(tmp_path):
    """YAML reads `off` as False: the on/off options take it as the word the docs show."""
    text = "name: t\nreward_audit: off\nmodel: {thinking: on}\nstages:\n  - type: grpo\n    shared_prompt: off\n"
    r = load_recipe(write_recipe(tmp_path / "r.yaml", text))
    assert (r.reward_audit, r.model.thinking, r.stages[0].shared_prompt) == ("off", "on", "off")


def test_unknown_key_names_file_path_and_suggestion(tmp_path):
    f = write_recipe(tmp_path / "r.yaml", "name: t\nmodel:\n  pth: x\n")
    with pytest.raises(RecipeError) as e:
        load_recipe(f)
    msg = str(e.value)
    assert str(f) in msg and "model.pth" in msg and "unknown key" in msg and "'path'" in msg


def test_unknown_key_inside_stage(tmp_path):
    f = write_recipe(tmp_path / "r.yaml", "name: t\nstages:\n  - type: sft\n    argz: {}\n")
    with pytest.raises(RecipeError) as e:
        load_recipe(f)
    assert "stages[0](sft).argz" in str(e.value) and "'args'" in str(e.value)


def test_wrong_type_is_reported(tmp_path):
    f = write_recipe(tmp_path / "r.yaml", "name: t\ndata:\n  train_size: lots\n")
    with pytest.raises(RecipeError) as e:
        load_recipe(f)
    assert "data.train_size" in str(e.value) and "'lots'" in str(e.value)


def test_trl_args_checked_against_sftconfig(tmp_path):
    f = write_recipe(tmp_path / "r.yaml", "name: t\nstages:\n  - type: sft\n    args: {learnin_rate: 0.1}\n")
    with pytest.raises(RecipeError) as e:
        load_recipe(f)
    assert "args.learnin_rate" in str(e.value) and "SFTConfig" in str(e.value) and "'learning_rate'" in str(e.value)
    f = write_recipe(tmp_path / "r2.yaml", "name: t\nstages:\n  - type: sft\n    args: {max_steps: many}\n")
    with pytest.raises(RecipeError) as e:
        load_recipe(f)
    assert "args.max_steps" in str(e.value)
    f = write_recipe(tmp_path / "r3.yaml", "name: t\nstages:\n  - type: sft\n    args: {output_dir: /x}\n")
    with pytest.raises(RecipeError, match="set by the workbench"):
        load_recipe(f)


def test_unknown_stage_type(tmp_path):
    f = write_recipe(tmp_path / "r.yaml", "name: t\nstages:\n  - type: sfy\n")
    with pytest.raises(RecipeError) as e:
        load_recipe(f)
    assert "stages[0].type" in str(e.value) and "'sft'" in str(e.value)


def test_malformed_yaml_names_line(tmp_path):
    f = write_recipe(tmp_path / "r.yaml", "name: t\nmodel: [unclosed\n")
    with pytest.raises(RecipeError) as e:
        load_recipe(f)
    assert "malformed YAML" in str(e.value) and "line" in str(e.value)


def test_missing_file():
    with pytest.raises(RecipeError, match="file not found"):
        load_recipe("does/not/exist.yaml")


def test_base_recipe_and_overrides(tmp_path):
    write_recipe(tmp_path / "base.yaml", MINIMAL + "seed: 7\nmodel:\n  dtype: float32\n")
    child = write_recipe(tmp_path / "child.yaml", "base: base.yaml\nname: child\nmodel:\n  freeze: [vision_tower]\n")
    r = load_recipe(child, ["sft.args.learning_rate=5e-4", "stages.0.args.max_steps=9", "seed=3", "model.lora.r=8"])
    assert r.name == "child" and r.seed == 3
    assert r.model.dtype == "float32" and r.model.freeze == ["vision_tower"]  # merged from base and child
    assert r.stages[0].args["learning_rate"] == 5e-4 and r.stages[0].args["max_steps"] == 9
    assert r.model.lora.r == 8 and r.model.lora.alpha == 32


def test_override_errors(tmp_path):
    f = write_recipe(tmp_path / "r.yaml", MINIMAL)
    with pytest.raises(RecipeError, match="key.path=value"):
        load_recipe(f, ["seed"])
    with pytest.raises(RecipeError) as e:
        load_recipe(f, ["stages.sfr.args.max_steps=1"])
    assert "no stage named 'sfr'" in str(e.value) and "'sft'" in str(e.value)
    with pytest.raises(RecipeError) as e:
        load_recipe(f, ["modle.path=x"])
    assert "modle" in str(e.value) and "'model'" in str(e.value)


def test_base_cycle(tmp_path):
    write_recipe(tmp_path / "a.yaml", "base: b.yaml\nname: a\n")
    write_recipe(tmp_path / "b.yaml", "base: a.yaml\nname: b\n")
    with pytest.raises(RecipeError, match="cycle"):
        load_recipe(tmp_path / "a.yaml")


def test_duplicate_stage_names(tmp_path):
    f = write_recipe(tmp_path / "r.yaml", "name: t\nstages:\n  - type: sft\n  - type: sft\n")
    with pytest.raises(RecipeError, match="two stages are named 'sft'"):
        load_recipe(f)


@pytest.mark.parametrize("recipe", sorted(p.name for p in (ROOT / "recipes").glob("*.yaml")))
def test_shipped_recipes_validate(recipe):
    load_recipe(ROOT / "recipes" / recipe)


def test_cli_reports_user_errors_without_traceback(tmp_path):
    f = write_recipe(tmp_path / "r.yaml", "name: t\nmodel:\n  pth: x\n")
    proc = subprocess.run(
        [sys.executable, "-m", "align.cli", "run", str(f)], capture_output=True, check=False, text=True
    )
    assert proc.returncode == 2
    assert "model.pth" in proc.stderr and "Traceback" not in proc.stderr


def test_cli_dry_run_prints_plan():
    proc = subprocess.run(
        [sys.executable, "-m", "align.cli", "run", str(ROOT / "recipes/quickstart.yaml"), "sft.args.max_steps=5",
         "--dry-run"],
        capture_output=True, check=False, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "stage 1: sft" in proc.stdout and "max_steps: 5" in proc.stdout
