"""tfmetric: classification-based deep metric learning (Zhai & Wu, BMVC 2019) for TF2 / Keras 3."""

__version__ = "0.1.0"
