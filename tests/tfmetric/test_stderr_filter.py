"""The CLIs' stderr filter: TensorFlow's native notices dropped, every other byte kept, nothing lost."""

import os
import subprocess
import sys

import pytest

from tfmetric.stderr_filter import LineFilter

PREAMBLE = b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
ONEDNN = (
    b"I0000 00:00:1796117231.691644    8852 port.cc:153] oneDNN custom operations are on. "
    b"You may see slightly different numerical results.\n"
)
CPU_GUARD = (
    b"I0000 00:00:1796117231.840646    8852 cpu_feature_guard.cc:227] This TensorFlow binary is "
    b"optimized to use available CPU instructions in performance-critical operations.\n"
    b"To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild "
    b"TensorFlow with the appropriate compiler flags.\n"
)
WARN = b"W1201 09:20:00.000000  123 cuda_executor.cc:10] could not open file\n"
ERROR = b"E1201 09:20:00.000000  123 cuda_driver.cc:10] failed call to cuInit\n"
FATAL = b"F1201 09:20:00.000000  123 check.cc:10] Check failed: x == y\n"
OURS = b"python -m tfmetric.train: error: Missing /data/raw/cars196/cars_annos.mat.\n"


def run_filter(data, level, pieces=1):
    f = LineFilter(level)
    size = max(1, len(data) // pieces)
    out = b"".join(f.feed(data[i : i + size]) for i in range(0, len(data), size))
    return out + f.flush()


@pytest.mark.parametrize("pieces", [1, 7, 1000])
def test_default_level_drops_info_and_warning_records_and_keeps_the_rest(pieces):
    stream = PREAMBLE + ONEDNN + CPU_GUARD + WARN + OURS + ERROR + FATAL + b"Traceback (most recent call last):\n"
    assert run_filter(stream, 2, pieces) == OURS + ERROR + FATAL + b"Traceback (most recent call last):\n"


def test_levels_follow_tf_cpp_min_log_level():
    stream = ONEDNN + WARN + ERROR + FATAL
    assert run_filter(stream, 0) == stream
    assert run_filter(stream, 1) == WARN + ERROR + FATAL
    assert run_filter(stream, 3) == FATAL


def test_a_continuation_line_is_dropped_only_after_a_dropped_record():
    line = b"To enable the following instructions: this is our own text\n"
    assert run_filter(OURS + line, 2) == OURS + line
    assert run_filter(CPU_GUARD + line, 2) == b""


def test_a_partial_line_is_held_until_flush_and_then_forwarded():
    f = LineFilter(2)
    assert f.feed(b"Enter a value: ") == b""
    assert f.flush() == b"Enter a value: "
    assert f.feed(b"I0000 00:00:17.5  12 port.cc:1] half") == b"" and f.flush() == b""


def _run_script(code, **env):
    script = "import os, sys\nfrom tfmetric import stderr_filter\nstderr_filter.install()\n" + code
    return subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60, env=dict(os.environ, **env))


def test_installed_filter_forwards_real_errors_even_when_the_process_dies_at_once():
    code = (
        f"os.write(2, {PREAMBLE + ONEDNN!r})\n"
        f"os.write(2, {OURS!r})\n"
        "print('stdout is untouched')\n"
        "sys.stdout.flush()\n"
        "os._exit(3)\n"
    )
    result = _run_script(code, TF_CPP_MIN_LOG_LEVEL="2")
    assert result.returncode == 3
    assert result.stderr == OURS and result.stdout == b"stdout is untouched\n"


def test_output_written_before_a_sigkill_still_arrives():
    code = f"os.write(2, {ONEDNN + OURS!r})\nimport signal\nos.kill(os.getpid(), signal.SIGKILL)\n"
    result = _run_script(code, TF_CPP_MIN_LOG_LEVEL="2")
    assert result.returncode == -9 and result.stderr == OURS


def test_level_zero_leaves_stderr_untouched():
    result = _run_script(f"os.write(2, {ONEDNN + OURS!r})\n", TF_CPP_MIN_LOG_LEVEL="0")
    assert result.returncode == 0 and result.stderr == ONEDNN + OURS


@pytest.mark.parametrize("module", ["tfmetric.train", "pipelines.build_tfrecords"])
def test_the_clis_install_it_before_tensorflow_prints(module, tmp_path):
    # TensorFlow is imported and a device created; on CPUs that print notices they must not show.
    code = (
        "import runpy, sys\n"
        f"sys.argv = ['-m']\n"
        f"sys.orig_argv = [sys.executable, '-m', {module!r}]\n"
        "import tfmetric\n"
        "import tensorflow as tf\n"
        "tf.constant(1.0) + 1.0\n"
        "sys.stderr.write('ours\\n')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == b"ours\n"
