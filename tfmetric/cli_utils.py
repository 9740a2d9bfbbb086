"""Shared helpers of the thin command-line entry points."""

import argparse
import errno
import logging
import os
import re
import sys

from tfmetric import config as config_lib

# Expected, user-fixable failures: reported as one line with exit code 2, never a traceback.
# (FloatingPointError: training diverged; the message says which checkpoint is kept.)
USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, PermissionError, FloatingPointError)


# What to do about an OS error, by errno name.
_OS_ADVICE = {
    "ENOSPC": "free some space or write elsewhere",
    "EFBIG": "the file size limit was reached; free some space, raise the limit or write elsewhere",
    "EROFS": "the file system is read-only; write elsewhere",
    "EACCES": "check the permissions or write elsewhere",
    "EISDIR": "pass a file, not a directory",
    "ENOTDIR": "a file stands where a directory is expected",
}
# Messages of TensorFlow's file errors (tf.errors.*Error, which are not OSError) that a user can act on.
_TF_FILE_ERRORS = (
    "NotFoundError",
    "PermissionDeniedError",
    "DataLossError",
    "ResourceExhaustedError",
    "AlreadyExistsError",
)
_TF_OS_TEXTS = ("No space left on device", "File too large", "Read-only file system", "Permission denied")


# Keras-style library errors end with "Received: name=value[, name=value]": the arguments they are about.
_RECEIVED = re.compile(r"Received: (.*)$", re.DOTALL)
_ARGUMENT = re.compile(r"(?:^|, )([A-Za-z_][\w.]*)=")


def name_flags(message, flags):
    """``message`` led by the flags of the arguments it names, e.g. ``--index: ... Received: index_dir=x``.

    Args:
      message: a library error's text; the arguments it is about follow ``Received:`` (Keras style).
      flags: {argument name: flag} of the CLI, e.g. ``{"index_dir": "--index"}``.
    """
    received = _RECEIVED.search(message)
    named = [flags[name] for name in _ARGUMENT.findall(received.group(1)) if name in flags] if received else []
    return f"{', '.join(dict.fromkeys(named))}: {message}" if named else message


def add_set_flag(parser, help):
    """The repeatable ``--set SECTION.FIELD=VALUE`` flag (into ``args.overrides``) that
    ``apply_set_flags`` applies."""
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE", help=help
    )


def apply_set_flags(config, overrides):
    """``config_lib.apply_overrides`` of the ``--set`` values, one at a time: a bad one is reported
    as ``--set VALUE: <the config's words>``."""
    for item in overrides or ():
        try:
            config_lib.apply_overrides(config, [item])
        except config_lib.ConfigError as e:
            raise config_lib.ConfigError(f"--set {item}: {e}") from None
    return config


def _first_line(text):
    return (str(text).strip().splitlines() or [""])[0]


def describe_os_error(e):
    """One line naming the file and what to do: ``path: No space left on device (free some space ...)``."""
    if e.strerror is None:  # raised with a message of ours (a missing dataset's says what to get where)
        return str(e).strip() or type(e).__name__
    where = ": ".join(str(f) for f in (e.filename, e.filename2) if f is not None) or "a file being written"
    advice = _OS_ADVICE.get(errno.errorcode.get(e.errno, ""))
    return f"{where}: {e.strerror}" + (f" ({advice})" if advice else "")


def _is_tf_file_error(e):
    tf_errors = getattr(sys.modules.get("tensorflow"), "errors", None)
    if tf_errors is None or not isinstance(e, tf_errors.OpError):
        return False
    return type(e).__name__ in _TF_FILE_ERRORS or any(t in str(e) for t in _TF_OS_TEXTS)


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the error first: ``prog: error: message`` is the first stderr line, then the
    usage (argparse prints the usage first). Exit status 2, as argparse."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n{self.format_usage()}")


def setup_logging(verbose=False):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )


def run_main(prog, fn, flags=None):
    """Calls ``fn()``; a user error prints ``prog: error: message`` and exits with status 2.

    ``flags`` ({argument name: flag}) names the flag of the library argument an error is about
    (``name_flags``): library errors speak of arguments, the command line of flags.
    """
    try:
        return fn()
    except USER_ERRORS as e:
        message = describe_os_error(e) if isinstance(e, OSError) else str(e).strip() or type(e).__name__
        print(f"{prog}: error: {name_flags(message, flags or {})}", file=sys.stderr)
        sys.exit(2)
    except OSError as e:  # read-only or full file system, a directory where a file was expected...
        print(f"{prog}: error: {describe_os_error(e)}", file=sys.stderr)
        sys.exit(2)
    except Exception as e:  # noqa: BLE001  (re-raised unless it is TensorFlow's word for an OS error)
        if not _is_tf_file_error(e):
            raise
        print(f"{prog}: error: {_first_line(getattr(e, 'message', str(e)))}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt as e:  # a StopRequested says where the checkpoint is and how to resume
        print(f"{prog}: interrupted" + (f": {e}" if str(e) else ""), file=sys.stderr)
        sys.exit(130)
