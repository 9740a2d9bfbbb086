"""Apache Beam jobs of tfmetric (``python -m pipelines.<job>``)."""

import tfmetric  # noqa: F401  (first: its stderr filter must be in place before TensorFlow loads)
