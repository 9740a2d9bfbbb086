"""Progress of long loops on stdout, readable both on a terminal and in a log file.

Keras' verbosity convention: 0 silent, 1 live progress (a bar on a terminal), 2 one line per
epoch; "auto" is 1 when stdout is a terminal and 2 otherwise, so redirected output never fills
with carriage returns, backspaces or colour codes.
"""

import sys
import time

VERBOSITIES = ("auto", 0, 1, 2)


def resolve_verbose(verbose):
    """``verbose`` as 0, 1 or 2 (``"auto"``: 1 on a terminal, 2 otherwise)."""
    if verbose == "auto":
        return 1 if sys.stdout.isatty() else 2
    if verbose not in (0, 1, 2):
        raise ValueError(f"verbose must be 'auto', 0, 1 or 2. Received: verbose={verbose!r}")
    return verbose


class Progress:
    """``done/total`` of a loop; silent for loops shorter than ``interval`` seconds.

    On a terminal (verbose 1) one status line is rewritten in place; otherwise (verbose 2) a
    line is printed at most every ``interval`` seconds. Nothing is printed at verbose 0.

    Args:
      label: what is counted, e.g. "embedding test".
      total: the expected count, or None when unknown.
      verbose: 0, 1, 2 or "auto" (see ``resolve_verbose``).
      unit: the noun after the counts.
      interval: seconds between printed updates.
    """

    def __init__(self, label, total=None, verbose="auto", unit="images", interval=10.0):
        self.label, self.total, self.unit, self.interval = label, total, unit, interval
        self.verbose = resolve_verbose(verbose)
        self._start = self._last = time.monotonic()
        self._printed = None  # the count last printed

    def _text(self, done):
        if self.total:
            return f"{self.label}: {done:,}/{self.total:,} {self.unit} ({100.0 * done / self.total:.0f}%)"
        return f"{self.label}: {done:,} {self.unit}"

    def update(self, done):
        now = time.monotonic()
        if not self.verbose or now - self._last < self.interval:
            return
        self._last = now
        rate = done / max(now - self._start, 1e-9)
        text = f"  {self._text(done)}, {rate:,.0f} {self.unit}/s"
        if self.verbose == 1:
            sys.stdout.write("\r" + text + "\033[K")
        else:
            sys.stdout.write(text + "\n")
        sys.stdout.flush()
        self._printed = done

    def close(self, done):
        """Ends the line of a terminal status; prints the final count if anything was printed."""
        if self._printed is not None and self._printed != done:
            text = f"  {self._text(done)} in {time.monotonic() - self._start:.0f} s"
            sys.stdout.write(("\r" + text + "\033[K\n") if self.verbose == 1 else text + "\n")
            sys.stdout.flush()
        elif self._printed is not None and self.verbose == 1:
            sys.stdout.write("\n")
            sys.stdout.flush()
