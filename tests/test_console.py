"""The console a person reads: one line per logging step per stage, a progress bar on a terminal only, no raw log
dicts, and answers shown without the replacement characters of characters the tokens cut off."""

from __future__ import annotations

import contextlib
import io
import re

import pytest
from rich.console import Console

from align.console import TrainingProgress, readable, step_line
from align.io import append_jsonl, read_jsonl
from align.pipeline import run_pipeline
from align.recipe import load_recipe
from rollouts.log import show
from tests.conftest import write_recipe

# every stage type that trains, a few steps each; the base model and SFT evaluated on 4 rows (the answers
# `align compare` prints at the end)
RECIPE = """
name: console
output_dir: {out}
data: {{train_size: 64, eval_size: 8, seed: 3, tasks: [count, color]}}
rollout: {{engine: hf}}
eval: {{limit: 4, max_new_tokens: 6, samples: 2, sampled: {{k: 0}}}}
stages:
  - type: align
    eval: false
    args: {{max_steps: 2, per_device_train_batch_size: 8, logging_steps: 1}}
  - type: sft
    args: {{max_steps: 4, per_device_train_batch_size: 8, logging_steps: 2}}
  - type: rft
    eval: false
    prompts: 8
    samples: 2
    max_new_tokens: 8
    accept: {{threshold: 0.0}}
    args: {{max_steps: 2, per_device_train_batch_size: 8, logging_steps: 1}}
  - type: grpo
    eval: false
    prompts: 16
    args: {{max_steps: 2, num_generations: 4, per_device_train_batch_size: 8, max_completion_length: 8,
           logging_steps: 1}}
  - type: dpo
    eval: false
    args: {{max_steps: 2, per_device_train_batch_size: 8, logging_steps: 1}}
  - type: rm
    batch_size: 16
    logging_steps: 2
"""
STAGES = ("align", "sft", "rft", "grpo", "dpo", "rm")
LINE = re.compile(r"^  (?P<stage>\w+)  step (?P<step>\d+)/(?P<total>\d+)(?P<values>(  [a-z ]+ -?[\d.]+(e[+-]\d+)?)+)"
                  r"  (?P<elapsed>\d+:\d\d) elapsed(, (?P<left>\d+:\d\d) left)?$")  # fmt: skip


@pytest.fixture(scope="module")
def console_run(tmp_path_factory, tiny_model):
    """One run through every training stage, its stdout and stderr captured as a pipe would (not a terminal)."""
    tmp = tmp_path_factory.mktemp("console")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        run = run_pipeline(load_recipe(write_recipe(tmp / "r.yaml", RECIPE.format(out=tmp))))
    return run.path, out.getvalue(), err.getvalue()


def test_one_line_per_logging_step_for_every_stage(console_run):
    run, out, _ = console_run
    lines = [m for m in map(LINE.match, out.splitlines()) if m]
    for stage in STAGES:
        logged = [r for r in read_jsonl(run / stage / "metrics.jsonl") if "loss" in r]
        shown = [m for m in lines if m["stage"] == stage]
        assert [int(m["step"]) for m in shown] == [r["step"] for r in logged] and logged, (stage, out)
        assert shown[-1]["step"] == shown[-1]["total"] and shown[-1]["left"] == "0:00"
        for m, record in zip(shown, logged):
            assert (
                f"  loss {record['loss']:.4f}" in m["values"] and f"  lr {record['learning_rate']:.2e}" in m["values"]
            )
        assert re.search(rf"^  {stage}  \d+ steps in \d+:\d\d", out, re.MULTILINE), (stage, out)
    by_stage = {m["stage"]: m["values"] for m in lines}
    assert "token acc" in by_stage["sft"] and "token acc" in by_stage["rft"] and "token acc" in by_stage["align"]
    assert "  reward " in by_stage["grpo"] and "  accuracy " in by_stage["grpo"]
    assert "pref acc" in by_stage["dpo"] and "pair acc" in by_stage["rm"]
    # DPO evaluates its held-out pairs when training starts: a line of its own
    assert re.search(r"^  dpo  eval at step 0/2  loss [\d.]+  pref acc [\d.]+  token acc", out, re.MULTILINE), out


def test_no_raw_log_dicts_and_no_redraws_in_piped_output(console_run):
    run, out, err = console_run
    for raw in ("{'loss'", "'grad_norm'", "{'eval_loss'", "'train_runtime'", "{'train"):  # transformers' printers
        assert raw not in out + err
    # no dict at all, but the recipe's args in the plan printed before the run
    assert [line for line in out.splitlines() if "{'" in line and "args={" not in line] == []
    assert "\r" not in out + err  # no carriage-return redraws: bars are drawn on a terminal only
    # metrics.jsonl stays the full record: values the line leaves out, and the end-of-training summary
    sft = read_jsonl(run / "sft" / "metrics.jsonl")
    assert all("grad_norm" in r and "entropy" in r for r in sft if "loss" in r)
    assert any("train_runtime" in r for r in sft)
    grpo = [r for r in read_jsonl(run / "grpo" / "metrics.jsonl") if "loss" in r]
    assert all("kl" in r or "reward_std" in r for r in grpo) and all("completions/mean_length" in r for r in grpo)


def test_answers_in_the_console_without_cut_off_characters(console_run):
    run, out, _ = console_run
    base = read_jsonl(run / "base" / "eval_samples.jsonl")
    assert any("\ufffd" in s["completion"] for s in base)  # the untrained model's answers, kept as decoded
    shown = re.findall(r"^ +base: '(.*)' ", out, re.MULTILINE)  # align compare's side-by-side answers
    assert sorted(shown) == sorted(" ".join(readable(s["completion"]).split()) for s in base), out
    assert not any("\ufffd" in a for a in shown)


def test_step_line_format():
    logs = {"loss": 2.31415, "grad_norm": 1.7, "learning_rate": 0.00196, "mean_token_accuracy": 0.5123, "epoch": 0.4}
    assert step_line("sft", 50, 1000, logs, 12.4, 228.0) == (
        "sft  step 50/1000  loss 2.3142  token acc 0.512  lr 1.96e-03  0:12 elapsed, 3:48 left"
    )
    grpo = {"loss": 0.0012, "reward": 0.6132, "reward_std": 0.3, "rewards/accuracy/mean": 0.55, "learning_rate": 1.5e-4}
    assert step_line("grpo", 20, 400, grpo, 3725, None) == (
        "grpo  step 20/400  loss 0.0012  reward 0.613  accuracy 0.550  lr 1.50e-04  1:02:05 elapsed"
    )
    dpo_eval = {"eval_loss": 0.6931, "eval_rewards/accuracies": 0.667, "eval_runtime": 0.1}
    assert (
        step_line("dpo", 0, 2, dpo_eval, 0.5, None)
        == "dpo  eval at step 0/2  loss 0.6931  pref acc 0.667  0:00 elapsed"
    )
    assert step_line("x", 1, 2, {"loss": float("nan"), "learning_rate": "n/a"}, 0, 0) == (
        "x  step 1/2  0:00 elapsed, 0:00 left"
    )


def test_progress_bar_on_a_terminal_only():
    from transformers.utils import logging as hf_logging

    was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.enable_progress_bar()  # as on a terminal (a pipeline run with piped stderr turns them off)
    term, pipe = io.StringIO(), io.StringIO()
    for buf, is_term in ((term, True), (pipe, False)):
        out = Console(file=buf, force_terminal=is_term, width=100, highlight=False)
        with TrainingProgress("sft", 4, out).start() as progress:
            # under the bar, transformers' own tqdm bars (a checkpoint's "Writing model shards") are off
            assert hf_logging.is_progress_bar_enabled() is not is_term
            for step in range(1, 5):
                progress.advance(step)
                if step % 2 == 0:
                    progress.log(step, {"loss": 1.0 / step, "learning_rate": 1e-3})
            progress.finish(4, "; the note")
        assert hf_logging.is_progress_bar_enabled()  # and back on after it
    if not was_on:
        hf_logging.disable_progress_bar()
    plain = pipe.getvalue()
    assert plain.splitlines()[0].startswith("  sft  step 2/4  loss 0.5000  lr 1.00e-03  0:00 elapsed")
    assert plain.splitlines()[-1] == "  sft  4 steps in 0:00; the note" and len(plain.splitlines()) == 3
    assert "\r" not in plain and "\x1b" not in plain and "ETA" not in plain
    drawn = term.getvalue()
    assert "ETA" in drawn and "0/4" in drawn and "step 4/4" in drawn  # the bar, then the lines above it
    assert drawn.rindex("\x1b[?25h") > drawn.rindex("\x1b[?25l")  # the cursor, hidden while the bar is drawn, is back
    assert drawn.endswith("  sft  4 steps in 0:00; the note\n")  # the bar taken down, the summary stays


def test_answers_cut_inside_a_character_are_shown_without_replacement_characters(tiny_model, tmp_path):
    """The tiny base model repeats one token: " 파" plus the lead byte of the next syllable. Decoding the whole
    answer (as the rollout engines do) leaves U+FFFD where each word stops inside that character."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    cut = next(i for t, i in sorted(tok.get_vocab().items()) if t == "ĠíĮĮë")  # bytes: " " ED 8C 8C EB
    answer = tok.decode([cut] * 3)
    assert answer == " 파\ufffd 파\ufffd 파\ufffd"  # what eval_samples.jsonl keeps
    assert readable(answer) == " 파 파 파"
    # a real answer whose generation budget ended inside its last character
    ids = tok.encode("빨간색입니다", add_special_tokens=False) + [cut]
    assert tok.decode(ids).endswith("\ufffd") and readable(tok.decode(ids)) == "빨간색입니다 파"
    # `align rollouts show` too; the log keeps the answer as decoded
    log = tmp_path / "grpo" / "rollouts.jsonl"
    append_jsonl(log, [{"step": 0, "prompt_id": "p0", "task": "ocr", "completion": answer, "tokens": 3, "total": 0.0}])
    buf = io.StringIO()
    show(tmp_path, console=Console(file=buf, width=200))
    assert (
        " 파 파 파" in buf.getvalue() and "\ufffd" not in buf.getvalue() and read_jsonl(log)[0]["completion"] == answer
    )
    # bytes that are not UTF-8 inside a word are not hidden; a real character is untouched
    assert readable("파\ufffd란색") == "파\ufffd란색" and readable("정답은 3개입니다.") == "정답은 3개입니다."
