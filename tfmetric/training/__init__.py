"""Training: the official schedule (warm-up on new parameters, then step-decayed SGD) and evaluation."""
