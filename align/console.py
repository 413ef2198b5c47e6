"""The workbench's console: one ``rich`` console for every message a run prints (quiet on ranks other than 0).

Training shows one line per logging step (``TrainingProgress.log``), e.g.::

    sft  step 50/1000  loss 2.3141  token acc 0.512  lr 1.96e-03  0:12 elapsed, 3:48 left

and, when the console is a terminal, a progress bar with the ETA below the lines. Piped output (CI logs, a file)
gets the lines only, no bar and no carriage-return redraws. ``metrics.jsonl`` keeps every logged value; the line
shows the few a person watches.
"""

from __future__ import annotations

import math
import re
import sys
import time
from typing import Self

from rich.console import Console

console = Console(highlight=False)
console.soft_wrap = not console.is_terminal  # in a log file, long lines are not cut into pieces at 80 columns

# (log key, label, format): the values a line shows, in this order, when the log has them. Keys as TRL and our rm
# loop log them: SFT's token accuracy, GRPO's mean total reward and its `accuracy` reward, DPO's preference accuracy
# (chosen scored above rejected), the rm stage's batch pairwise accuracy.
LINE_FIELDS = (
    ("loss", "loss", "{:.4f}"),
    ("reward", "reward", "{:.3f}"),
    ("rewards/accuracy/mean", "accuracy", "{:.3f}"),
    ("rewards/accuracies", "pref acc", "{:.3f}"),
    ("accuracy", "pair acc", "{:.3f}"),
    ("mean_token_accuracy", "token acc", "{:.3f}"),
    ("learning_rate", "lr", "{:.2e}"),
)


def clock(seconds: float) -> str:
    """``m:ss`` or ``h:mm:ss``."""
    s = round(max(0.0, seconds))
    h, rest = divmod(s, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def _number(value) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None  # NaN: nothing to show


def step_line(stage: str, step: int, total: int, logs: dict, elapsed: float, remaining: float | None) -> str:
    """The console line for one logging step: step/total, the values of ``LINE_FIELDS`` the log has, the time. An
    evaluation's log (``eval_`` keys, e.g. DPO's held-out pairs) gets the same values, marked ``eval at step``."""
    evals = {k.removeprefix("eval_"): v for k, v in logs.items() if k.startswith("eval_")}
    logs = evals or logs
    parts = [f"{stage}  {'eval at ' if evals else ''}step {step}/{total}"]
    for key, label, fmt in LINE_FIELDS:
        value = _number(logs.get(key))
        if value is not None:
            parts.append(f"{label} {fmt.format(value)}")
    left = "" if remaining is None else f", {clock(remaining)} left"
    parts.append(f"{clock(elapsed)} elapsed{left}")
    return "  ".join(parts)


def plain_library_output() -> None:
    """Turn off the libraries' tqdm bars (transformers loading and writing weights, datasets' map and cast) when
    stderr is not a terminal: in a log file or CI output each redraw would be a carriage-return fragment."""
    if sys.stderr.isatty():
        return
    import datasets
    from huggingface_hub.utils import disable_progress_bars
    from transformers.utils import logging

    datasets.disable_progress_bars()
    disable_progress_bars()
    logging.disable_progress_bar()


class TrainingProgress:
    """One stage's training on the console: ``log`` prints a step's line, ``advance`` moves the bar (a terminal
    only). Times count from ``start`` and from its step, so a resumed run's estimate uses the steps it ran."""

    def __init__(self, stage: str, total: int, out: Console | None = None):
        self.stage, self.total, self.console = stage, max(1, int(total)), out or console
        self.first_step, self.t0, self.bar, self.task = 0, time.time(), None, None
        self.library_bars = False

    def start(self, step: int = 0) -> Self:
        from rich import progress as rp

        self.first_step, self.t0 = step, time.time()
        if self.console.is_terminal and not self.console.quiet:
            from transformers.utils import logging as hf_logging  # its tqdm bars (checkpoints) would break into ours

            self.library_bars = hf_logging.is_progress_bar_enabled()
            hf_logging.disable_progress_bar()
            self.bar = rp.Progress(rp.TextColumn(f"  {self.stage}"), rp.BarColumn(), rp.MofNCompleteColumn(),
                                   rp.TimeElapsedColumn(), rp.TextColumn("ETA"), rp.TimeRemainingColumn(),
                                   console=self.console, transient=True)  # fmt: skip
            self.task = self.bar.add_task(self.stage, total=self.total, completed=step)
            self.bar.start()
        return self

    def elapsed(self) -> float:
        return time.time() - self.t0

    def remaining(self, step: int) -> float | None:
        done = step - self.first_step
        return self.elapsed() / done * (self.total - step) if done > 0 else None

    def advance(self, step: int) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=step)

    def log(self, step: int, logs: dict) -> None:
        line = step_line(self.stage, step, self.total, logs, self.elapsed(), self.remaining(step))
        self.console.print("  " + line, markup=False, soft_wrap=True)

    def close(self) -> None:
        """Take the bar down (again: a no-op); the lines stay."""
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
            if self.library_bars:
                from transformers.utils import logging as hf_logging

                hf_logging.enable_progress_bar()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def finish(self, step: int, note: str = "") -> None:
        """Take the bar down and print the stage's steps (those this run took) and time, then ``note``."""
        self.close()
        n = step - self.first_step
        self.console.print(f"  {self.stage}  {n} step{'' if n == 1 else 's'} in {clock(self.elapsed())}{note}",
                           markup=False)  # fmt: skip


# A byte-level BPE token may hold a character's first bytes only (the tiny model's " 파" + the lead byte of the next
# syllable). When the answer stops there — at its end, or where the model put a space next — the decoder shows the
# cut-off character as U+FFFD. Shown to a person, that character is dropped; one inside a word (bytes that are not
# UTF-8 at all) stays, and the JSONL records keep the text as decoded.
_CUT_OFF = re.compile("\ufffd+(?=\\s|$)")


def readable(text: str) -> str:
    """A model's answer as shown to a person: without the replacement characters of characters cut off at the end
    of a word or of the answer."""
    return _CUT_OFF.sub("", text)
