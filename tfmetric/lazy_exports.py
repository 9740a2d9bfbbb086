"""Lazy package exports: ``python -m tfmetric.export --help`` answers without importing TensorFlow."""

import importlib


def lazy_exports(package, exports):
    """(__getattr__, __dir__, __all__) for a package whose names live in its submodules.

    Args:
      package: the package's ``__name__``.
      exports: dict public name -> submodule name (relative to the package).
    """
    names = sorted(exports)

    def __getattr__(name):
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{exports[name]}"), name)
        setattr(importlib.import_module(package), name, value)
        return value

    def __dir__():
        return names

    return __getattr__, __dir__, names
