"""One progress reporter for every long loop (conversion, prediction,
training): `label 3/10 1.25 s/image ETA 0:00:08 detail`.

On a terminal the line is redrawn in place; elsewhere (log files, CI) it is
silent unless `log_when_quiet` asks for one logged line per update, which is
what the trainer wants in its logs. Kept free of TensorFlow so converter
worker processes can import it cheaply.
"""

import logging
import sys
import time
from typing import Optional, TextIO


def format_duration(seconds: float) -> str:
    """`h:mm:ss` for an ETA; negative or unknown times read as 0:00:00."""
    seconds = max(int(seconds), 0)
    return f'{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}'


class Progress:
    """Counts `done` of `total` units and reports speed and time left.

    Args:
      total: units expected in all.
      label: what is being done ('Converting train', 'step').
      unit: the unit's name, for the speed ('image', 'step').
      done: units already done before this reporter started (a resumed
        run); speed and ETA count only the units done since.
      stream: where the live line goes; stderr by default.
      live: redraw the line on `stream`; by default only when it is a
        terminal, so captured output holds no carriage returns.
      log_when_quiet: when not live, log each update with `logging.info`.
    """

    def __init__(self, total: int, label: str = '', unit: str = 'item',
                 done: int = 0, stream: Optional[TextIO] = None,
                 live: Optional[bool] = None, log_when_quiet: bool = False):
        self.total, self.label, self.unit = total, label, unit
        self.done = self._first = done
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty() if live is None else live
        self.log_when_quiet = log_when_quiet
        self._started = time.perf_counter()

    def advance(self, count: int = 1, detail: str = '') -> None:
        self.update(self.done + count, detail)

    def update(self, done: int, detail: str = '') -> None:
        self.done = done
        if self.live:
            end = '\n' if done >= self.total else ''
            self.stream.write(f'\r{self.line(detail)}\033[K{end}')
            self.stream.flush()
        elif self.log_when_quiet:
            logging.info('%s', self.line(detail))

    def clear(self) -> None:
        """Erases the live line (it is redrawn by the next update), so that
        a log line written now starts at the left margin instead of after
        the counter."""
        if self.live and 0 < self.done < self.total:
            self.stream.write('\r\033[K')
            self.stream.flush()

    def line(self, detail: str = '') -> str:
        """The report for the current count, without terminal codes."""
        counted = self.done - self._first
        elapsed = time.perf_counter() - self._started
        per_unit = elapsed / max(counted, 1)
        words = [self.label, f'{self.done}/{self.total}',
                 f'{per_unit:.2f} s/{self.unit}',
                 f'ETA {format_duration(per_unit * (self.total - self.done))}',
                 detail]
        return ' '.join(word for word in words if word)
