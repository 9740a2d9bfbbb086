"""benchmarks/train_step.py never prints an impossible "% of peak": a row above its reference is
marked (and explained under the table), everything else is a plain percentage."""

import importlib.util
import os

from tests import fixtures as fx


def _load():
    spec = importlib.util.spec_from_file_location(
        "train_step", os.path.join(fx.REPO_ROOT, "benchmarks", "train_step.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fraction_of_the_reference():
    format_fraction = _load().format_fraction
    assert format_fraction(0.45, 1.0) == ("    45.0%", False)
    assert format_fraction(1.0, 1.0) == ("   100.0%", False)
    assert format_fraction(1.317, 1.0) == ("  131.7%*", True)
    assert format_fraction(0.5, None) == ("      n/a", False)
