"""Shared helpers of the thin command-line entry points."""
import argparse
import logging
import os
import sys

# Expected, user-fixable failures: reported as one line with exit code 2, never a traceback.
USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, PermissionError)


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the error first: ``prog: error: message`` is the first stderr line, then the
    usage (argparse prints the usage first). Exit status 2, as argparse."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n{self.format_usage()}")


def setup_logging(verbose=False):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


def run_main(prog, fn):
    """Calls ``fn()``; a user error prints ``prog: error: message`` and exits with status 2."""
    try:
        return fn()
    except USER_ERRORS as e:
        message = str(e).strip() or type(e).__name__
        print(f"{prog}: error: {message}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        sys.exit(130)
