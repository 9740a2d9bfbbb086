"""Training input served by tf.data service workers (``--set data.service=grpc://HOST:PORT``).

The trainer builds each epoch's class-balanced dataset as usual and hands its graph to a tf.data
service dispatcher; the workers run it (reading shards, decoding, augmenting) and the trainer only
receives finished batches. Sharding is ``DATA``: every worker runs the same deterministic pipeline
and keeps every n-th batch, so the served batches are exactly the local ones, each once, whole
classes (P x K) included; only their order across workers interleaves. That policy needs the
dispatcher to know its workers (``DispatcherConfig(worker_addresses=[...])``, see the README).
"""

import tensorflow as tf

from tfmetric.config import SERVICE_ADDRESS


def check_address(address: str) -> None:
    """ValueError unless ``address`` is ``grpc://HOST:PORT``."""
    if not SERVICE_ADDRESS.match(address):
        raise ValueError(f"service must be a dispatcher address grpc://HOST:PORT. Received: service={address!r}")


def served(dataset: tf.data.Dataset, address: str) -> tf.data.Dataset:
    """``dataset`` read through the tf.data service dispatcher at ``address`` (``grpc://HOST:PORT``)."""
    check_address(address)
    return dataset.apply(
        tf.data.experimental.service.distribute(
            processing_mode=tf.data.experimental.service.ShardingPolicy.DATA, service=address
        )
    )
