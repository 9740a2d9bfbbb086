"""The learning-rate schedule of the official code, as a pure function of the epoch."""


def learning_rate_at(epoch, train_config):
    """Learning rate used during ``epoch`` (0-based, counting the warm-up epochs).

    Warm-up epochs use ``lr * lr_mult`` (on the new parameters only); afterwards the lr starts at
    ``lr`` and is multiplied by ``gamma`` every ``epochs_per_step`` epochs.
    """
    t = train_config
    if epoch < t.warmup_epochs:
        return t.lr * t.lr_mult
    step = (epoch - t.warmup_epochs) // t.epochs_per_step
    return t.lr * t.gamma**step


def total_epochs(train_config):
    return train_config.warmup_epochs + train_config.epochs_per_step * train_config.num_steps
