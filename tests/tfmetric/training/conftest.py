from tfmetric import config as config_lib


def tiny_config(data_dir, **train):
    """digits, InceptionV1 at 32x32, 16-d, 3 steps per epoch: seconds per epoch on a CPU."""
    config = config_lib.preset("digits")
    overrides = [f"data.data_dir={data_dir}", "data.batch_size=20", "data.images_per_class=4",
                 "model.embedding_dim=16", "train.steps_per_epoch=3", "train.epochs_per_step=1",
                 "train.num_steps=2", "train.warmup_epochs=1", "train.test_every_n_epochs=1", "eval.nmi=false",
                 "eval.projector_max_items=64"]
    overrides += [f"train.{k}={v}" for k, v in train.items()]
    return config_lib.apply_overrides(config, overrides)
