"""GRPO step time and peak memory: the shared-prompt path vs TRL's path (both through the workbench's GRPO trainer)
vs a plain TRL script, on the same model, data, rewards and config.

    python scripts/bench_grpo_step.py [--settings quickstart,long] [--steps 3] [--warmup 1] [--repeats 2]
    python scripts/bench_grpo_step.py --layouts [--prompt-tokens 288] [--completion-tokens 8]

Settings:
  quickstart  the quickstart's GRPO batch shape as it was measured (docs/grpo_speed.md; the recipe has since moved to
              demo-korean-vlm and other settings): the embedded tiny Korean VLM (Idefics3, 4 image tokens) after a
              short SFT on the quickstart's data (so answers are short, as after the quickstart's SFT and RFT),
              64 completions per step (8 prompts x G=8), max_completion_length 24, lr 1.5e-4, its two rewards;
  long        a long-prompt VLM: a tiny Idefics3 (SigLIP-style tower, pixel-shuffle connector, Llama) taking 128-px
              images as 256 image tokens, image tasks only, 64 completions per step (8 prompts x G=8), answers of
              at most 8 tokens.
Variants: shared (shared_prompt: auto), trl (shared_prompt: off, otherwise the same trainer), plain (TRL's
GRPOTrainer as a user would write it; it needs one shim, None -> [] for the images of text-only rows, or Idefics3's
processor fails on the quickstart's mixed image/text batches). filter_zero_variance is off so that all three compute
the same loss. Each run is its own process (started in turn: shared, trl, plain, shared, ...); it times ``warmup +
steps`` optimizer steps and reports the mean of the last ``steps`` (the first step holds one-time work: the
shared path's check against TRL's, lazy imports), and the peak resident memory of the training (VmHWM, reset just
before ``train()``), minus the memory before it. The machine is shared: quote the ratios of one run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

VARIANTS = ("shared", "trl", "plain")
QUICKSTART = {"learning_rate": 1.5e-4, "num_generations": 8, "per_device_train_batch_size": 64,
              "max_completion_length": 24, "temperature": 1.0}  # fmt: skip
LONG = {"learning_rate": 1.5e-4, "num_generations": 8, "per_device_train_batch_size": 64, "max_completion_length": 8,
        "temperature": 1.0}  # fmt: skip
LONG_SPEC = {"image_size": 128, "patch_size": 8, "scale_factor": 1}  # (128/8)^2 = 256 image tokens per image


def cache() -> Path:
    from align.io import cache_dir

    return cache_dir() / "bench_grpo_step"


def quickstart_model(sft_steps: int) -> str:
    """The embedded model after a short SFT on the quickstart's data (built once, cached)."""
    out = cache() / f"quickstart-sft{sft_steps}"
    if (out / "model" / "config.json").exists():
        return str(out / "model")
    from align.pipeline import run_pipeline
    from align.recipe import load_recipe

    out.mkdir(parents=True, exist_ok=True)
    recipe = out / "sft.yaml"  # quickstart.yaml's model, data and SFT settings, fewer steps
    recipe.write_text(f"""name: bench-sft
output_dir: {out / "runs"}
seed: 42
model: {{path: tiny-korean-vlm}}
data: {{source: synthetic, train_size: 2000, eval_size: 50}}
eval: {{enabled: false}}
stages:
  - type: sft
    args: {{learning_rate: 2.0e-3, per_device_train_batch_size: 32, max_steps: {sft_steps}, warmup_steps: 50,
            logging_steps: 50}}
""")
    run = run_pipeline(load_recipe(recipe)).path
    os.replace(run / "sft" / "model", out / "model")
    return str(out / "model")


def long_model() -> str:
    from align.models.tiny.korean_vlm import TinySpec, build_tiny

    return str(build_tiny(cache() / "idefics3-256-image-tokens", TinySpec(**LONG_SPEC)))


def dataset(setting: str, n_prompts: int):
    from align.data import load_splits
    from align.recipe import DataSpec

    tasks = ["count", "color", "ocr", "bbox"] if setting == "long" else ["count", "color", "ocr", "arith", "bbox"]
    train = load_splits(DataSpec(train_size=2000 + n_prompts, eval_size=50, seed=42, tasks=tasks)).train
    return train.select(range(2000, 2000 + n_prompts))  # rows after those the SFT model saw


def prepare(args) -> dict:
    out = {}
    for setting in args.settings:
        out[setting] = quickstart_model(args.sft_steps) if setting == "quickstart" else long_model()
        dataset(setting, 8)  # build the data once, before the timed processes
    return out


# ------------------------------------------------------------------ one timed run (its own process)


def vm(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024  # MiB
    return float("nan")


def worker(args) -> None:
    import torch
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    import rewards as registry
    from align.models import load_model_and_processor
    from align.shared_prompt import SharedPrompt
    from align.stages.grpo import GRPO_DEFAULTS, grpo_rows
    from align.trl_extensions import grpo_trainer_class

    settings = QUICKSTART if args.setting == "quickstart" else LONG
    model, processor, family = load_model_and_processor(args.model, None, "float32")
    rewards = registry.resolve_all([{"name": "accuracy"}, {"name": "korean_consistency", "weight": 0.1}])
    n_prompts = (args.warmup + args.steps) * settings["per_device_train_batch_size"] // settings["num_generations"]
    data = grpo_rows(dataset(args.setting, n_prompts), True)
    config = GRPOConfig(output_dir=tempfile.mkdtemp(), use_cpu=True, bf16=False, report_to="none", seed=0,
                        max_steps=args.warmup + args.steps, save_strategy="no",
                        reward_weights=[r.weight for r in rewards],
                        **{**GRPO_DEFAULTS, "logging_steps": 1, **settings})  # fmt: skip
    if args.variant == "plain":

        class Plain(GRPOTrainer):
            def _generate(self, prompts):  # Idefics3's processor rejects None for a text-only row's images
                out = list(super()._generate(prompts))
                out[6] = None if out[6] is None else [im or [] for im in out[6]]
                return tuple(out)

        trainer_cls = Plain
    else:
        trainer_cls = grpo_trainer_class()
    times: list[float] = []
    cpu: list[float] = []

    class Clock(TrainerCallback):
        def on_step_begin(self, *a, **k):
            self.t, self.c = time.perf_counter(), time.process_time()

        def on_step_end(self, *a, **k):
            times.append(time.perf_counter() - self.t)
            cpu.append(time.process_time() - self.c)

    trainer = trainer_cls(model=model, reward_funcs=rewards, args=config, train_dataset=data,
                          processing_class=processor, callbacks=[Clock()])  # fmt: skip
    if args.variant != "plain":
        trainer.shared_prompt = SharedPrompt("auto" if args.variant == "shared" else "off")
        trainer.shared_prompt.setup(trainer, family.image_inputs)
    before = vm("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    torch.manual_seed(0)
    trainer.train()
    peak = vm("VmHWM")
    params = {k: v.detach().clone() for k, v in trainer.model.named_parameters()}
    torch.save(params, args.out + ".pt")
    lengths = [x["completions/mean_length"] for x in trainer.state.log_history if "completions/mean_length" in x]
    info = {"step_seconds": times, "cpu_seconds": cpu, "peak_mib": peak - before, "rss_before_mib": before,
            "completion_tokens": lengths,
            "shared_prompt": trainer.shared_prompt.summary() if args.variant != "plain" else None}  # fmt: skip
    Path(args.out).write_text(json.dumps(info))


# ------------------------------------------------------------------ the shared-prompt layout, measured


def layout_worker(args) -> None:
    """One forward + backward of G completions per prompt on the embedded Llama (tiny-korean-lm): the prompt repeated
    per completion (TRL), a prefix KV cache (align.shared_prompt), or the G completions packed behind their prompt
    in one row with a block mask (each segment = last prompt token + completion: same scoring)."""
    import torch
    from trl.trainer.utils import add_fused_lm_head

    from align.models import load_model_and_processor, resolve_model_path
    from align.shared_prompt import shared_logps

    model, _, _ = load_model_and_processor(resolve_model_path("tiny-korean-lm", progress=None), None, "float32")
    add_fused_lm_head(model, outputs=("log_probs", "entropy"))
    u, g, p, c = 8, 8, args.prompt_tokens, args.completion_tokens
    gen = torch.Generator().manual_seed(0)
    vocab = model.config.vocab_size
    prompts = torch.randint(10, vocab, (u, p), generator=gen)
    completions = torch.randint(10, vocab, (u * g, c), generator=gen)
    full = torch.cat([prompts.repeat_interleave(g, 0), completions], 1)
    ones = torch.ones_like(full)

    def repeat():
        labels = full.clone()
        labels[:, :p] = -100
        return model(input_ids=full, attention_mask=ones, labels=labels, fused_lm_head=True).log_probs[:, -c:]

    def kv():
        return shared_logps(model, full, ones, c, True, {})[0]

    def packed():
        s = c + 1
        seg = torch.cat([prompts[:, -1:].repeat_interleave(g, 0), completions], 1).view(u, g * s)
        ids = torch.cat([prompts[:, :-1], seg], 1)
        n = ids.size(1)
        pos = torch.cat([torch.arange(p - 1), (torch.arange(s) + p - 1).repeat(g)])
        segment = torch.cat([torch.full((p - 1,), -1), torch.arange(g).repeat_interleave(s)])
        allowed = (torch.arange(n)[:, None] >= torch.arange(n)[None, :]) & (
            (segment[None, :] == -1) | (segment[None, :] == segment[:, None]))  # fmt: skip
        labels = torch.full((u, n), -100)
        labels[:, p - 1 :] = torch.cat([completions, torch.full((u * g, 1), -100)], 1).view(u, g * s)
        out = model(input_ids=ids, attention_mask=allowed[None, None].expand(u, 1, n, n),
                    position_ids=pos[None].expand(u, -1), shift_labels=labels, fused_lm_head=True)  # fmt: skip
        return out.log_probs[:, p - 1 :].reshape(u * g, s)[:, :c]

    fn = {"repeat": repeat, "kv": kv, "packed": packed}[args.worker_layout]
    before = vm("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        fn().sum().backward()
        times.append(time.perf_counter() - start)
    peak = vm("VmHWM") - before
    with torch.no_grad():
        check = (fn() - repeat()).abs().max().item()
    Path(args.out).write_text(json.dumps({"seconds": times, "peak_mib": peak, "max_diff": check}))


def layouts(args) -> None:
    print(f"forward+backward of 8 prompts x G=8: {args.prompt_tokens} prompt tokens, {args.completion_tokens} "
          f"completion tokens, tiny-korean-lm; {args.steps} passes per process, {args.repeats} processes per layout")  # fmt: skip
    tmp = Path(tempfile.mkdtemp())
    res: dict[str, list[dict]] = {k: [] for k in ("repeat", "kv", "packed")}
    for r in range(args.repeats):
        for layout, runs in res.items():
            out = tmp / f"{layout}-{r}.json"
            subprocess.run([sys.executable, __file__, "--worker-layout", layout, "--out", str(out), "--steps",
                            str(args.steps), "--prompt-tokens", str(args.prompt_tokens), "--completion-tokens",
                            str(args.completion_tokens), "--threads", str(args.threads)], check=True,
                           stdout=subprocess.DEVNULL)  # fmt: skip
            runs.append(json.loads(out.read_text()))
    base = statistics.median(t for x in res["repeat"] for t in x["seconds"])
    for layout, runs in res.items():
        sec = statistics.median(t for x in runs for t in x["seconds"])
        print(f"  {layout:7} {sec:6.3f} s ({sec / base:4.2f}x)  peak +{max(x['peak_mib'] for x in runs):5.0f} MiB  "
              f"max |logp - repeat| {max(x['max_diff'] for x in runs):.1e}")  # fmt: skip


# ------------------------------------------------------------------ driver


def run_one(args, setting: str, variant: str, model: str, out: Path) -> dict:
    cmd = [sys.executable, __file__, "--worker", variant, "--setting", setting, "--model", model, "--out", str(out),
           "--steps", str(args.steps), "--warmup", str(args.warmup), "--threads", str(args.threads)]  # fmt: skip
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL if not args.verbose else None)
    return json.loads(out.read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--settings", default="quickstart,long")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--steps", type=int, default=3, help="timed optimizer steps per run")
    p.add_argument("--warmup", type=int, default=1, help="untimed first steps per run")
    p.add_argument("--repeats", type=int, default=2, help="runs per variant, interleaved")
    p.add_argument("--sft-steps", type=int, default=300, help="SFT steps of the quickstart setting's model")
    p.add_argument("--threads", type=int, default=0,
                   help="torch threads per process (0: torch's default); 1 is steadier on a machine shared with other "
                   "jobs, where 2-thread kernels wait on each other")  # fmt: skip
    p.add_argument("--verbose", action="store_true")
    p.add_argument("--layouts", action="store_true", help="compare repeat / KV-cache / packed layouts instead")
    p.add_argument("--prompt-tokens", type=int, default=288, help="--layouts: prompt length")
    p.add_argument("--completion-tokens", type=int, default=8, help="--layouts: completion length")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--worker-layout", help=argparse.SUPPRESS)
    p.add_argument("--setting", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # inherited by the worker processes
        import torch

        torch.set_num_threads(args.threads)
    if args.worker:
        args.variant = args.worker
        return worker(args)
    if args.worker_layout:
        return layout_worker(args)
    if args.layouts:
        return layouts(args)
    import torch

    args.settings = args.settings.split(",")
    variants = args.variants.split(",")
    models = prepare(args)
    tmp = Path(tempfile.mkdtemp())
    print(f"{os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads, load average {os.getloadavg()[0]:.1f} at "
          f"start; {args.repeats} runs per variant, interleaved; mean of {args.steps} steps after {args.warmup} "
          "warm-up step(s)")  # fmt: skip
    for setting in args.settings:
        results: dict[str, list[dict]] = {v: [] for v in variants}
        for r in range(args.repeats):
            for v in variants:
                results[v].append(run_one(args, setting, v, models[setting], tmp / f"{setting}-{v}-{r}.json"))
        step = {v: [statistics.mean(x["step_seconds"][args.warmup :]) for x in results[v]] for v in variants}
        cpu = {v: statistics.median(statistics.mean(x["cpu_seconds"][args.warmup :]) for x in results[v])
               for v in variants}  # fmt: skip
        peak = {v: max(x["peak_mib"] for x in results[v]) for v in variants}
        base = "plain" if "plain" in variants else variants[-1]
        final = {v: torch.load(tmp / f"{setting}-{v}-0.json.pt") for v in variants}
        print(f"\n{setting}: {models[setting]}")
        print(f"  {'variant':8} {'wall s/step (each run)':24} {'median':>7} {'vs ' + base:>9} {'CPU s/step':>11} "
              f"{'vs ' + base:>9} {'peak MiB':>9} {'max |param - ' + base + '|':>22}")  # fmt: skip
        for v in variants:
            med = statistics.median(step[v])
            diff = max((final[v][k] - final[base][k]).abs().max().item() for k in final[base])
            runs = " ".join(f"{s:.2f}" for s in step[v])
            print(f"  {v:8} {runs:24} {med:7.2f} {med / statistics.median(step[base]):8.2f}x {cpu[v]:11.2f} "
                  f"{cpu[v] / cpu[base]:8.2f}x {peak[v]:9.0f} {diff:22.2e}")  # fmt: skip
        sp = results.get("shared", [{}])[0].get("shared_prompt")
        if sp:
            print(f"  shared path: {json.dumps(sp)}")
        lengths = results[variants[0]][0]["completion_tokens"]
        print(f"  completion tokens per step (mean): {', '.join(f'{x:.1f}' for x in lengths)}")
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
