"""The package and command conventions of docs/ARCHITECTURE.md: every package names its public API
in ``__all__`` (lazily only where a command imports the package), and every command has one shape
and answers ``--help`` before TensorFlow loads."""

import importlib
import json
import subprocess
import sys

import pytest

PACKAGES = ("data", "datasets", "export", "layers", "losses", "metrics", "models", "search", "serve", "training")
# Packages a command imports before it parses its flags: their names are imported on first use.
LAZY = ("data", "export", "search", "serve", "training")
COMMANDS = (
    "train",
    "evaluate",
    "ablate",
    "weights",
    "export.__main__",
    "search.__main__",
    "serve.__main__",
    "data.batches",
)


@pytest.mark.parametrize("name", PACKAGES)
def test_every_package_names_its_public_api(name):
    package = importlib.import_module(f"tfmetric.{name}")
    assert package.__all__ and list(package.__all__) == sorted(package.__all__), "__all__ is sorted"
    for attribute in package.__all__:
        value = getattr(package, attribute)
        module = getattr(value, "__module__", None) or f"tfmetric.{name}"
        assert module.startswith(f"tfmetric.{name}"), f"{name}.{attribute} comes from {module}"


def test_commands_answer_help_before_tensorflow_loads():
    script = f"""
import importlib, json, sys
shapes = {{}}
for name in {COMMANDS!r}:
    cli = importlib.import_module("tfmetric." + name)
    try:
        cli.parse_args(["--help"])
    except SystemExit as e:
        shapes[name] = [e.code, cli.PROG, callable(cli.main)]
for name in {LAZY!r}:
    importlib.import_module("tfmetric." + name)
print(json.dumps({{"shapes": shapes, "tensorflow": "tensorflow" in sys.modules}}))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=True)
    report = json.loads(out.stdout.splitlines()[-1])
    assert report["tensorflow"] is False
    assert report["shapes"] == {
        name: [0, f"python -m tfmetric.{name.removesuffix('.__main__')}", True] for name in COMMANDS
    }
