"""``align``: the workbench's command line.

align run RECIPE [key.path=value ...] [--dry-run] [--resume[=RUN_DIR]]
align launch RECIPE [key.path=value ...] [--dry-run [--gpus N]] [--resume[=RUN_DIR]]   (what launch.sh runs)
align status RUN_DIR [--json]
align model build-tiny [--out DIR] [--force]
align data build [RECIPE] [--out DIR]
align eval MODEL_DIR [--recipe RECIPE] [--out DIR] [--bench NAME [--source PATH] [--limit N] [--judge M]]
align compare RUN_OR_CHECKPOINT ... [--out DIR]
align report RUN_OR_CHECKPOINT ... [--out FILE]
align rollouts show RUN [--step N] [--worst K | --best K]
align rewards list | align rewards try NAME --completion TEXT --answer A
align rewards audit NAME [--task T] [--answer A] [--json]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from align.errors import UserError
from align.models.families import FAMILIES

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
if not sys.stderr.isatty():  # a log file or a pipe: progress as lines (the stages log theirs), no redrawn bars
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")


def _load(recipe: str | None, overrides=(), check_args: bool = True):
    from align.recipe import apply_override, load_recipe, parse_override, validate

    if recipe is None:  # the defaults, with any key=value overrides
        data: dict = {"name": "default"}
        for text in overrides:
            parts, value = parse_override(text)
            apply_override(data, parts, value, text)
        return validate(data)
    return load_recipe(recipe, list(overrides), check_args=check_args)


def _resume_arg(args) -> None:
    """``--resume key=value``: argparse took the override as the run directory; give it back."""
    if args.resume and "=" in args.resume and not Path(args.resume).exists():
        args.overrides = [*args.overrides, args.resume]
        args.resume = "latest"


def cmd_run(args) -> int:
    from align.pipeline import console, plan, run_pipeline
    from align.recipe import dump_recipe

    _resume_arg(args)
    recipe = _load(args.recipe, args.overrides)
    if args.dry_run:
        console.print(plan(recipe))
        console.print("[dim]--- resolved recipe ---[/dim]")
        console.print(dump_recipe(recipe), markup=False)
        return 0
    run_pipeline(recipe, resume=args.resume)
    return 0


def cmd_launch(args) -> int:
    from align.launcher import launch

    _resume_arg(args)
    if args.dry_run:
        cmd_run(args)
    return launch(args.recipe, list(args.overrides), dry_run=args.dry_run, gpus=args.gpus, resume=args.resume)


def cmd_status(args) -> int:
    import json

    from rich.console import Console
    from rich.table import Table

    from align.resume import status

    report = status(Path(args.run))
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
        return 0
    table = Table(title=f"{report['run']}" + (" (finished)" if report["finished"] else ""))
    for col in ("stage", "type", "status", "step", "last checkpoint"):
        table.add_column(col)
    for s in report["stages"]:
        last = Path(s["last_checkpoint"]).name if s["last_checkpoint"] else "-"
        table.add_row(s["stage"], s["type"], s["status"], str(s["step"] if s["step"] is not None else "-"), last)
    console = Console(highlight=False)
    console.print(table)
    console.print("--resume would: " + "; ".join(report["resume_would"]))
    return 0


def _add_resume(parser) -> None:
    parser.add_argument("--resume", nargs="?", const="latest", metavar="RUN_DIR",
                        help="continue an interrupted run (default: the recipe's latest); put it last or use "
                             "--resume=RUN_DIR")  # fmt: skip


def cmd_build_tiny(args) -> int:
    from align.io import cache_dir
    from align.models.tiny import TINY_NAME, build_tiny_family
    from align.models.tiny.korean_vlm import build_tiny

    if args.family:
        out = Path(args.out) if args.out else cache_dir() / "models" / f"tiny-{args.family}"
        print(f"tiny {args.family} model ready at {build_tiny_family(args.family, out)}")
        return 0
    out = Path(args.out) if args.out else cache_dir() / "models" / TINY_NAME
    path = build_tiny(out, force=args.force)
    print(f"{TINY_NAME} ready at {path}")
    return 0


def cmd_model_compose(args) -> int:
    from align.models.compose import compose

    out = compose(args.vision, args.language, args.out, args.projector, args.pool, seed=args.seed,
                  resnet_blocks=args.resnet_blocks, resnet_kernel=args.resnet_kernel,
                  projector_hidden=args.projector_hidden)  # fmt: skip
    print(f"composed model written to {out} (load it with model.path: {out}; train its projector with an "
          "`align` stage)")  # fmt: skip
    return 0


def cmd_model_info(args) -> int:
    """The family the workbench recognises for a model and what it knows about it."""
    import json

    from align.models import load_config, load_processor, resolve_model_path
    from align.models.families import FAMILIES, describe, resolve

    if args.path in FAMILIES and not Path(args.path).exists():  # a family's entry, without a model at hand
        info = describe(FAMILIES[args.path])
    else:
        path = resolve_model_path(args.path)
        processor = load_processor(path, args.trust_remote_code)
        family = resolve(args.family, load_config(path, args.trust_remote_code),
                         getattr(processor, "tokenizer", processor), path)  # fmt: skip
        info = {"path": path, "processor": type(processor).__name__, **describe(family)}
        if family.check_weights:  # a native implementation: the checkpoint's weight names against the model's
            info["weights"] = {k: len(v) for k, v in family.hook("check_weights")(path).items()}
    if args.json:
        print(json.dumps(info, ensure_ascii=False, indent=2))
    else:
        for key, value in info.items():
            print(f"{key:>14}: {value}")
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
    if args.bench:
        from align.benchmarks.run import evaluate_benchmarks

        metrics = evaluate_benchmarks(model, recipe, _bench_specs(args, recipe), out, base_dir=recipe_dir(recipe))
        console.print(metrics_table({args.stage: metrics}, title="benchmarks"))
        console.print(f"wrote {out / 'eval.json'} and per-row answers in {out / 'bench'}")
        return 0
    metrics = evaluate(model, recipe, args.stage, out, base_dir=recipe_dir(recipe))
    console.print(metrics_table({args.stage: metrics}))
    console.print(f"wrote {out / 'eval.json'}")
    return 0


def _bench_specs(args, recipe) -> list:
    """``--bench NAME`` (repeatable): the recipe's settings for that benchmark if it has them, with --source and
    --limit on top."""
    from align.benchmarks.registry import lookup
    from align.recipe import BenchmarkSpec

    if "all" in args.bench:  # every benchmark of the recipe (with --limit on each)
        if not recipe.eval.benchmarks or args.source:
            raise UserError("--bench all runs the recipe's eval.benchmarks, each with its own source",
                            "give --recipe with an eval.benchmarks list, and no --source")  # fmt: skip
        args.bench = [s.name for s in recipe.eval.benchmarks]
    specs = []
    for name in args.bench:
        info = lookup(name)
        known = [s for s in recipe.eval.benchmarks if lookup(s.name).name == info.name]
        fields = known[0].model_dump(exclude_none=True) if known else {"name": info.name}
        fields.update({k: v for k, v in (("source", args.source), ("limit", args.limit)) if v is not None})
        if args.judge and info.family == "judged":  # --judge replaces the recipe's judge, keeping its other settings
            kept = {k: v for k, v in (fields.get("judge") or {}).items() if k not in ("url", "model", "model_name")}
            fields["judge"] = {**kept, **({"url": args.judge} if args.judge.startswith(("http://", "https://")) else
                                          {"model": args.judge})}  # fmt: skip
        try:
            specs.append(BenchmarkSpec(**fields))
        except ValueError as e:
            raise UserError(f"--bench {name}: {e.errors()[0]['msg'] if hasattr(e, 'errors') else e}",
                            "k-llava-w needs --judge MODEL_DIR_OR_URL (or a judge in the recipe's eval.benchmarks)")  # fmt: skip
    return specs


def cmd_compare(args) -> int:
    from align.compare import compare

    compare(args.paths, args.out, args.examples)
    return 0


def cmd_report(args) -> int:
    from align.report import write_report

    out, info = write_report(args.paths, args.out, max_bytes=int(args.max_mb * 1e6), gallery=args.gallery,
                             steps=args.steps)  # fmt: skip
    left = " (capped: some prompts or rollout steps left out, the page says which)" if info["capped"] else ""
    print(f"wrote {out} ({info['bytes'] / 1e6:.2f} MB){left}")
    return 0


def cmd_rollouts_show(args) -> int:
    from rollouts.log import show

    show(args.path, step=args.step, worst=args.worst, best=args.best, limit=args.limit)
    return 0


def cmd_rewards_list(args) -> int:
    from rich.console import Console
    from rich.table import Table

    import rewards as registry

    table = Table(title="rewards (use the name in a recipe's `rewards:`; or module:function / file.py:function)")
    table.add_column("name")
    table.add_column("from")
    table.add_column("what it scores")
    for name, target in sorted(registry.available().items()):
        try:
            doc = registry.doc_line(registry.load_function(name))
        except Exception as e:  # noqa: BLE001 - a broken plugin must not hide the others
            doc = f"[red]cannot load: {e}[/red]"
        table.add_row(name, target.split(":")[0], doc)
    Console().print(table)
    return 0


def _parse_kv(pairs) -> dict:
    from align.recipe import parse_override

    out = {}
    for text in pairs or []:
        parts, value = parse_override(text)
        out[".".join(parts)] = value
    return out


def cmd_rewards_try(args) -> int:
    import json

    from rich.console import Console

    import rewards as registry

    console = Console(highlight=False)
    reward = registry.resolve({"name": args.name, "args": _parse_kv(args.args)}, Path.cwd())
    if args.file:
        from align.io import read_jsonl

        rows = read_jsonl(args.file)
        if not rows or "completion" not in rows[0]:
            raise UserError(f"{args.file}: each line needs a 'completion' (and usually an 'answer')")
    elif args.completion is not None:
        rows = [{"completion": args.completion, "answer": args.answer, "task": args.task}]
    else:
        raise UserError("give --completion TEXT (with --answer A) or --file rows.jsonl")
    columns = {k: [r.get(k) for r in rows] for k in {k for r in rows for k in r} if k != "completion"}
    completions = [[{"role": "assistant", "content": str(r["completion"])}] for r in rows]
    scores = reward([None] * len(rows), completions, **columns)
    for row, score in zip(rows, scores):
        console.print(f"[bold]{args.name}[/bold] = {score}    completion={str(row['completion'])[:80]!r} "
                      f"answer={row.get('answer')!r}")  # fmt: skip
        info = registry.explain(args.name, str(row["completion"]), row.get("answer"),
                                **{k: v for k, v in row.items() if k not in ("completion", "answer")})  # fmt: skip
        console.print("    extracted: " + json.dumps(info, ensure_ascii=False, default=str), soft_wrap=True)
    if reward.errors:
        console.print(f"[red]{reward.errors} sample(s) raised: {reward.first_error}[/red]")
    return 0


def cmd_rewards_audit(args) -> int:
    import json

    from rich.console import Console

    import rewards as registry
    from rewards.audit import audit, print_report

    reward = registry.resolve({"name": args.name, "args": _parse_kv(args.args)}, Path.cwd())
    try:
        report = audit(reward, args.name, kind=args.kind, task=args.task, answer=args.answer)
    except ValueError as e:
        raise UserError(str(e), "see `align rewards audit --help`") from None
    if args.json:
        print(json.dumps(report.to_json(), ensure_ascii=False, indent=1))
    else:
        print_report(report, Console(highlight=False))
    return 1 if report.gameable else 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="align", description="Alignment workbench for Korean vision-language models.")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run a recipe")
    r.add_argument("recipe")
    r.add_argument("overrides", nargs="*", help="key.path=value overrides")
    r.add_argument("--dry-run", action="store_true", help="print the resolved plan without loading weights")
    _add_resume(r)
    r.set_defaults(func=cmd_run)

    la = sub.add_parser("launch", help="run a recipe with the processes its launch: block asks for (launch.sh)")
    la.add_argument("recipe")
    la.add_argument("overrides", nargs="*", help="key.path=value overrides")
    la.add_argument("--dry-run", action="store_true", help="print the commands (training, vLLM server) only")
    la.add_argument(
        "--gpus", type=int, help="with --dry-run: plan for a node with this many GPUs (e.g. on a login node)"
    )
    _add_resume(la)
    la.set_defaults(func=cmd_launch)

    st = sub.add_parser("status", help="a run directory: stages done, last checkpoint, what --resume would do")
    st.add_argument("run", help="run directory (<output_dir>/<recipe>/<timestamp> or …/latest)")
    st.add_argument("--json", action="store_true", help="print JSON")
    st.set_defaults(func=cmd_status)

    m = sub.add_parser("model", help="model utilities")
    msub = m.add_subparsers(dest="model_command", required=True)
    b = msub.add_parser("build-tiny", help="build the embedded tiny Korean VLM")
    b.add_argument("--out", help="output directory (default: the cache)")
    b.add_argument("--force", action="store_true", help="rebuild even if present")
    b.add_argument("--family", choices=tuple(FAMILIES),
                   help="build the tiny model of this family instead (tests and recipe smoke runs)")  # fmt: skip
    b.set_defaults(func=cmd_build_tiny)
    mc = msub.add_parser("compose", help="build a small VLM from a vision encoder and a language model")
    mc.add_argument("--vision", required=True, help="CLIP or SigLIP encoder (hub id or directory)")
    mc.add_argument("--language", required=True, help="causal LM with a chat template (hub id or directory)")
    mc.add_argument(
        "--projector",
        default="mlp2x_gelu",
        choices=("mlp2x_gelu", "aiku"),
        help="mlp2x_gelu: LLaVA-1.5's (a LLaVA model); aiku: MLP → N×N average pooling → ResNet block",
    )
    mc.add_argument(
        "--pool",
        type=int,
        help="aiku: N×N average pooling over the patch grid (default 2; must divide it): (grid / N)² image tokens",
    )
    mc.add_argument("--resnet-blocks", type=int, help="aiku: residual depthwise-conv blocks after pooling (default 1)")
    mc.add_argument("--resnet-kernel", type=int, help="aiku: their odd kernel size (default 3)")
    mc.add_argument("--projector-hidden", type=int, help="aiku: the MLP's hidden width (default: the LM's hidden size)")
    mc.add_argument("--out", required=True, help="output model directory")
    mc.add_argument("--seed", type=int, default=0, help="seed of the projector's initialisation")
    mc.set_defaults(func=cmd_model_compose)
    mi = msub.add_parser("info", help="the model's family: loader, chat tokens, stop tokens, modules, vLLM support")
    mi.add_argument("path", help="model directory, hub id or tiny-korean-vlm; or a family name (its table entry, "
                    "with what was tested here and what was not)")  # fmt: skip
    mi.add_argument("--family", default="auto", choices=("auto", *FAMILIES),
                    help="check the model against this family instead of detecting it")  # fmt: skip
    mi.add_argument("--trust-remote-code", action="store_true", help="allow the model's own code")
    mi.add_argument("--json", action="store_true")
    mi.set_defaults(func=cmd_model_info)

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
    e.add_argument("--bench", action="append", metavar="NAME",
                   help="run only this benchmark (repeatable): k-mmbench, k-seed, k-mmstar, k-dtcbench, k-llava-w, "
                        "kmmlu, haerae, click, kobest, koffvqa, k-viscuit, kreta, konet, kmmlu-redux, kmmlu-pro, "
                        "kobalt, caption, latency, or all (the recipe's eval.benchmarks); "
                        "results merged into eval.json")  # fmt: skip
    e.add_argument("--source", help="with --bench: hub id or local file/folder of the benchmark's data")
    e.add_argument("--limit", type=int, help="with --bench: at most this many questions")
    e.add_argument("--judge", help="with --bench k-llava-w, koffvqa or konet: judge model dir or OpenAI-compatible URL")
    e.set_defaults(func=cmd_eval)

    rw = sub.add_parser("rewards", help="list rewards, try one on a completion, or audit one for hacks")
    rsub = rw.add_subparsers(dest="rewards_command", required=True)
    rl = rsub.add_parser("list", help="every available reward with its description")
    rl.set_defaults(func=cmd_rewards_list)
    rt = rsub.add_parser("try", help="score completions and show what the reward extracted")
    rt.add_argument("name", help="reward name, module:function or file.py:function")
    rt.add_argument("--completion", help="the model's answer")
    rt.add_argument("--answer", help="the reference answer")
    rt.add_argument("--task", help="the row's task (for `accuracy`)")
    rt.add_argument("--file", help="JSONL with completion, answer and any other columns per line")
    rt.add_argument("--args", nargs="*", help="key=value arguments bound to the reward")
    rt.set_defaults(func=cmd_rewards_try)
    ra = rsub.add_parser("audit", help="red-team a reward with hedges, format tricks and code cheats, and run its "
                         "labelled corpus both ways; exit 1 if a hack is paid (docs/rewards.md)")  # fmt: skip
    ra.add_argument("name", help="reward name, module:function or file.py:function")
    ra.add_argument("--task", help="audit on this built-in task's sample row (count, color, ocr, arith, math, bbox, "
                    "choice, code, humaneval) or, with --answer, treat the answer as this task's")  # fmt: skip
    ra.add_argument("--answer", help="audit on this reference answer (e.g. '3개', '답: 7', 'B', '<bbox>…</bbox>')")
    ra.add_argument("--kind", choices=("answer", "code", "shaping"),
                    help="what the reward checks (default: known for built-ins, detected for plugins)")  # fmt: skip
    ra.add_argument("--args", nargs="*", help="key=value arguments bound to the reward")
    ra.add_argument("--json", action="store_true", help="print the report as JSON")
    ra.set_defaults(func=cmd_rewards_audit)

    ro = sub.add_parser("rollouts", help="inspect the sampled completions RFT and GRPO logged")
    rosub = ro.add_subparsers(dest="rollouts_command", required=True)
    rs = rosub.add_parser("show", help="rollouts as a table: step, prompt, completion, each reward, advantage")
    rs.add_argument("path", help="run directory, rft/grpo stage folder, or rollouts.jsonl")
    rs.add_argument("--step", type=int, help="only this step (GRPO: trainer step; RFT: sampling batch)")
    rs.add_argument("--worst", type=int, help="the K lowest-total rollouts")
    rs.add_argument("--best", type=int, help="the K highest-total rollouts")
    rs.add_argument("--limit", type=int, default=40, help="rows per stage at most")
    rs.set_defaults(func=cmd_rollouts_show)

    c = sub.add_parser("compare", help="compare checkpoints: metrics table, answers side by side, plot")
    c.add_argument("paths", nargs="+", help="run directories (all their stages) or stage folders")
    c.add_argument("--out", help="folder for compare.md and compare.png (default: the run directory)")
    c.add_argument("--examples", type=int, default=5, help="held-out prompts shown side by side")
    c.set_defaults(func=cmd_compare)

    rp = sub.add_parser("report", help="one self-contained HTML page: metrics, curves, images and answers, rollouts")
    rp.add_argument("paths", nargs="+", help="run directories (all their stages) or stage folders")
    rp.add_argument("--out", help="HTML file to write (default: RUN_DIR/report.html for one run, else ./report.html)")
    rp.add_argument("--max-mb", type=float, default=5.0, help="size cap; prompts and rollout steps beyond it are "
                    "left out (the page says which)")  # fmt: skip
    rp.add_argument("--gallery", type=int, default=60, help="held-out prompts shown at most")
    rp.add_argument("--steps", type=int, default=8, help="rollout steps shown per RFT/GRPO stage")
    rp.set_defaults(func=cmd_report)
    return p


def main(argv: list[str] | None = None) -> int:
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
