"""tfmetric: classification-based deep metric learning (Zhai & Wu, BMVC 2019) for TF2 / Keras 3."""

from tfmetric import stderr_filter as _stderr_filter

__version__ = "0.1.0"

# `python -m tfmetric.<tool>`: keep TensorFlow's native start-up notices out of the tool's stderr.
_stderr_filter.install_for_cli()
