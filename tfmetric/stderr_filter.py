"""Keeps TensorFlow's and absl's native start-up notices out of the command-line tools' stderr.

On some CPUs TensorFlow 2.21 writes, from C++ and whatever ``TF_CPP_MIN_LOG_LEVEL`` says,

    WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
    I0000 00:00:1796117231.691644    8852 port.cc:153] oneDNN custom operations are on. ...

once at import and again when the first device is created, so a tool's own one-line error would
come after them. Native code writes to file descriptor 2 directly, so ``sys.stderr`` tricks do not
help. ``install()`` points descriptor 2 at a pipe drained by a small forked process that drops
native log records below ``TF_CPP_MIN_LOG_LEVEL`` (default 2: INFO and WARNING; ``0`` keeps
everything) and forwards every other byte unchanged to the real stderr. A separate process, not a
thread, so that a crash or ``os._exit`` of the tool never loses the last lines of a real error:
the drain runs until every writer of the pipe (the tool and its subprocesses) has gone.
"""

import array
import atexit
import fcntl
import logging
import os
import re
import select
import signal
import sys
import termios
import time

# absl's prefix: severity letter, MMDD, time, thread id, file:line]. E.g.
# "I0000 00:00:1796117231.691644    8852 port.cc:153] oneDNN custom operations are on."
_NATIVE_RECORD = re.compile(rb"^([IWEF])\d{4} [\d:.]+\s+\d+ [^\s\]]+:\d+\] ")
_ABSL_PREAMBLE = b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
# Second lines of multi-line native notices (cpu_feature_guard.cc's instruction list).
_CONTINUATIONS = (b"To enable the following instructions:",)
_SEVERITY = {b"I": 0, b"W": 1, b"E": 2, b"F": 3}
_HOLD_SECONDS = 0.05  # a partial line waits at most this long for its end before it is forwarded

# Start-up notices that Beam logs through Python's logging whatever the job does: logger -> prefixes.
_PYTHON_NOTICES = {
    "": ("apitools not found", "Resource module is not available"),
    "apache_beam.io.iobase": ("*** WriteImpl min_shards undef",),
    "apache_beam.io.tfrecordio": ("Couldn't find python-snappy",),
    "apache_beam.transforms.util": ("BatchElements statistics",),
}

_installed = False


class _DropNotices(logging.Filter):
    def __init__(self, prefixes):
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record):
        return not str(record.msg).startswith(self.prefixes)


def drop_python_notices():
    """Filters Beam's fixed start-up notices (``_PYTHON_NOTICES``) out of Python's logging."""
    for name, prefixes in _PYTHON_NOTICES.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropNotices) for f in logger.filters):
            logger.addFilter(_DropNotices(prefixes))


def min_log_level():
    """TensorFlow's own reading of ``TF_CPP_MIN_LOG_LEVEL`` (unset or invalid: 0)."""
    try:
        return int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0"))
    except ValueError:
        return 0


class LineFilter:
    """Drops native log records below ``min_level`` from a byte stream; everything else passes.

    Args:
      min_level: records of lower severity (I=0, W=1, E=2, F=3) are dropped; 0 drops nothing.
    """

    def __init__(self, min_level):
        self.min_level = min_level
        self.pending = b""  # a partial line, held until its end arrives or ``flush``
        self._dropping = False  # the last complete line was a dropped record

    def feed(self, data):
        """The bytes to forward for ``data``, less a trailing partial line (see ``flush``)."""
        *lines, self.pending = (self.pending + data).split(b"\n")
        return b"".join(line + b"\n" for line in lines if self._keep(line))

    def flush(self):
        """The held partial line, when the writer went quiet or closed."""
        rest, self.pending = self.pending, b""
        return rest if rest and self._keep(rest) else b""

    def _keep(self, line):
        if self.min_level <= 0:
            return True
        match = _NATIVE_RECORD.match(line)
        if match:
            self._dropping = _SEVERITY[match.group(1)] < self.min_level
        elif line.rstrip(b"\r") == _ABSL_PREAMBLE:
            self._dropping = True
        elif not (self._dropping and line.startswith(_CONTINUATIONS)):
            self._dropping = False
        return not self._dropping


def _drain(read_fd, write_fd, min_level):
    """The forked process: filter ``read_fd`` into ``write_fd`` until every writer has closed."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)  # a Ctrl-C meant for the tool must not lose its last words
    line_filter = LineFilter(min_level)

    def write(data):
        while data:
            data = data[os.write(write_fd, data) :]

    try:
        held_since = None
        while True:
            ready, _, _ = select.select([read_fd], [], [], _HOLD_SECONDS)
            chunk = os.read(read_fd, 65536) if ready else b""
            if ready and not chunk:
                break
            write(line_filter.feed(chunk))
            if not line_filter.pending:
                held_since = None
            elif held_since is None:
                held_since = time.monotonic()
            elif time.monotonic() - held_since >= _HOLD_SECONDS:  # a prompt or progress text
                write(line_filter.flush())
                held_since = None
        write(line_filter.flush())
    except OSError:  # the real stderr went away (closed pipe): nothing left to forward to
        pass
    os._exit(0)


def install():
    """Filters descriptor 2 of this process (and of the subprocesses it starts) from now on.

    Call it before TensorFlow is imported. A second call does nothing; ``TF_CPP_MIN_LOG_LEVEL=0``
    or a platform without ``fork`` leaves stderr untouched.
    """
    global _installed
    level = min_log_level()
    if _installed or level <= 0 or not hasattr(os, "fork"):
        return
    _installed = True
    sys.stderr.flush()
    read_fd, write_fd = os.pipe()
    real_stderr = os.dup(2)
    pid = os.fork()
    if pid == 0:
        os.close(write_fd)
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):  # hold no copy of the tool's stdout: readers wait for its end
            os.dup2(null, fd)
        _drain(read_fd, real_stderr, level)
    os.close(read_fd)
    os.close(real_stderr)
    os.dup2(write_fd, 2)
    os.close(write_fd)
    atexit.register(_wait_for_drain)


def _wait_for_drain(timeout=1.0):
    """At exit: give the drain time to forward what the pipe holds, so a shell prompt comes after it.

    Descriptor 2 stays open (messages printed while the interpreter shuts down still pass);
    ``FIONREAD`` tells how much the drain has yet to read.
    """
    try:
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    deadline = time.monotonic() + timeout
    buffered = array.array("i", [0])
    while time.monotonic() < deadline:
        try:
            fcntl.ioctl(2, termios.FIONREAD, buffered)
        except OSError:
            return
        if not buffered[0]:
            break
        time.sleep(0.005)
    time.sleep(0.01)  # read is not yet written


def install_for_cli():
    """``install()`` when this process is ``python -m tfmetric.<tool>`` or ``python -m pipelines.<job>``.

    Runs from the package ``__init__`` (imported before the tool's module, hence before
    TensorFlow); ``sys.argv[0]`` is ``"-m"`` only while Python is locating a ``-m`` module.
    """
    argv = getattr(sys, "orig_argv", [])
    if sys.argv[:1] != ["-m"] or "-m" not in argv:
        return
    module = argv[argv.index("-m") + 1] if argv.index("-m") + 1 < len(argv) else ""
    if module.split(".")[0] in ("tfmetric", "pipelines"):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        install()
        drop_python_notices()
