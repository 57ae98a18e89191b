"""Training progress on stderr: a bar on a terminal, plain lines into a file or pipe, or nothing.

tqdm redraws its bar with carriage returns, which a log file keeps as one enormous line; so when stderr is
not a terminal (or the bar is turned off with --no-progress) training prints one plain line every few log
rows instead, about LINES_PER_RUN lines a run. `mode`:
- True or "auto": the bar on a terminal, plain lines otherwise;
- "lines": plain lines always (`fewshot train --no-progress`);
- False or "off": nothing (`fewshot train --quiet`).
"""
from __future__ import annotations

import sys
import time

from tqdm import tqdm

from fewshot.errors import FewshotError

LINES_PER_RUN = 50
MODES = ("auto", "bar", "lines", "off")


def line_interval(total: int, log_every: int) -> int:
    """Steps between plain lines: a multiple of log_every (lines come with the loss of a log row), giving
    about LINES_PER_RUN lines over `total` steps."""
    return log_every * max(1, round(total / LINES_PER_RUN / log_every))


class TrainingProgress:
    def __init__(self, mode: bool | str, total: int, initial: int, desc: str, log_every: int,
                 enabled: bool = True) -> None:
        mode = {True: "auto", False: "off"}.get(mode, mode)
        if mode not in MODES:
            raise FewshotError(f"progress {mode!r} is not one of {', '.join(MODES)}")
        if mode == "auto":
            mode = "bar" if sys.stderr.isatty() else "lines"
        self.mode = mode if enabled else "off"
        self.total, self.desc = total, desc
        self.every = line_interval(total, log_every)
        self.loss: float | None = None
        self.val: float | None = None
        self.first, self.started = initial, time.perf_counter()
        self.bar = tqdm(total=total, initial=initial, disable=self.mode != "bar", desc=desc, unit="step")

    def update(self, step: int, loss: float | None = None, val: float | None = None) -> None:
        """After step `step`: the latest logged loss and validation accuracy, if this step had them."""
        self.loss = self.loss if loss is None else loss
        self.val = self.val if val is None else val
        if self.mode == "bar":
            self.bar.update(1)
            if loss is not None or val is not None:
                postfix = {} if self.loss is None else {"loss": f"{self.loss:.3f}"}
                if self.val is not None:
                    postfix["val"] = f"{self.val:.2f}"
                self.bar.set_postfix(postfix)
        elif self.mode == "lines" and (step % self.every == 0 or step == self.total):
            print(self.line(step), file=sys.stderr, flush=True)

    def line(self, step: int) -> str:
        seconds = time.perf_counter() - self.started
        rate = (step - self.first) / seconds if seconds > 0 else 0.0
        parts = [f"{self.desc}: step {step}/{self.total} ({100 * step // self.total}%)"]
        if self.loss is not None:
            parts.append(f"loss {self.loss:.3f}")
        if self.val is not None:
            parts.append(f"val {self.val:.2f}%")
        parts.append(f"{rate:.2f} steps/s, {seconds:.0f} s")
        if rate > 0 and step < self.total:
            parts.append(f"about {(self.total - step) / rate:.0f} s left")
        return ", ".join(parts)

    def close(self) -> None:
        self.bar.close()
