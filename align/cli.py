"""``align``: the workbench's command line.

    align run RECIPE [key.path=value ...] [--dry-run]
    align model build-tiny [--out DIR] [--force]
    align data build [RECIPE] [--out DIR]
    align eval MODEL_DIR [--recipe RECIPE] [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def _load(recipe: str | None, overrides=(), check_args: bool = True):
    from align.recipe import load_recipe, validate

    if recipe is None:
        return validate({"name": "default"})
    return load_recipe(recipe, list(overrides), check_args=check_args)


def cmd_run(args) -> int:
    from align.pipeline import console, plan, run_pipeline
    from align.recipe import dump_recipe

    recipe = _load(args.recipe, args.overrides)
    if args.dry_run:
        console.print(plan(recipe))
        console.print("[dim]--- resolved recipe ---[/dim]")
        console.print(dump_recipe(recipe), markup=False)
        return 0
    run_pipeline(recipe)
    return 0


def cmd_build_tiny(args) -> int:
    from align.models import TINY_NAME, cache_dir
    from align.models.tiny import build_tiny

    out = Path(args.out) if args.out else cache_dir() / "models" / TINY_NAME
    path = build_tiny(out, force=args.force)
    print(f"{TINY_NAME} ready at {path}")
    return 0


def cmd_data_build(args) -> int:
    from align.data import build_synthetic_data, synthetic_spec
    from align.data.synthetic import build_synthetic

    recipe = _load(args.recipe, args.overrides, check_args=False)
    if recipe.data.source != "synthetic":
        print(f"data.source is {recipe.data.source}; only synthetic data is built", file=sys.stderr)
        return 2
    path = build_synthetic(args.out, synthetic_spec(recipe.data)) if args.out else build_synthetic_data(recipe.data)
    print(f"synthetic data ready at {path}")
    return 0


def cmd_eval(args) -> int:
    from align.evaluate import evaluate
    from align.models import resolve_model_path
    from align.pipeline import console, metrics_table, recipe_dir

    recipe = _load(args.recipe, args.overrides, check_args=False)
    model = resolve_model_path(args.model)
    out = Path(args.out) if args.out else Path(model)
    metrics = evaluate(model, recipe, args.stage, out, base_dir=recipe_dir(recipe))
    console.print(metrics_table({args.stage: metrics}))
    console.print(f"wrote {out / 'eval.json'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="align", description="Alignment workbench for Korean vision-language models.")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run a recipe")
    r.add_argument("recipe")
    r.add_argument("overrides", nargs="*", help="key.path=value overrides")
    r.add_argument("--dry-run", action="store_true", help="print the resolved plan without loading weights")
    r.set_defaults(func=cmd_run)

    m = sub.add_parser("model", help="model utilities")
    msub = m.add_subparsers(dest="model_command", required=True)
    b = msub.add_parser("build-tiny", help="build the embedded tiny Korean VLM")
    b.add_argument("--out", help="output directory (default: the cache)")
    b.add_argument("--force", action="store_true", help="rebuild even if present")
    b.set_defaults(func=cmd_build_tiny)

    d = sub.add_parser("data", help="data utilities")
    dsub = d.add_subparsers(dest="data_command", required=True)
    db = dsub.add_parser("build", help="generate the synthetic Korean tasks")
    db.add_argument("recipe", nargs="?", help="take the data block from this recipe")
    db.add_argument("overrides", nargs="*", help="key.path=value overrides, e.g. data.train_size=500")
    db.add_argument("--out", help="output directory (default: the cache)")
    db.set_defaults(func=cmd_data_build)

    e = sub.add_parser("eval", help="evaluate a model directory on a recipe's held-out data")
    e.add_argument("model", help="model directory (or tiny-korean-vlm)")
    e.add_argument("--recipe", help="recipe whose data, rewards and eval settings to use")
    e.add_argument("overrides", nargs="*", help="key.path=value overrides")
    e.add_argument("--stage", default="eval", help="label for the results")
    e.add_argument("--out", help="folder for eval.json (default: the model directory)")
    e.set_defaults(func=cmd_eval)
    return p


def main(argv: list[str] | None = None) -> int:
    from align.errors import UserError

    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # key=value overrides may also follow the options (argparse stops collecting positionals at the first option)
    if extra and hasattr(args, "overrides") and all("=" in x and not x.startswith("-") for x in extra):
        args.overrides = list(args.overrides or []) + extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return args.func(args) or 0
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
