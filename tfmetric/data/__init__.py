"""TFRecord schema and manifest, image headers, preparation of TFRecords, and input pipelines.

    from tfmetric.data import open_source
    source, module = open_source(config.data)        # TFRecords built first when missing
    source.train_dataset("train", config.data, "imagenet_mean_std", epoch=0, steps=100, seed=0)

``schema`` holds the TFRecord features, ``manifest`` the manifest of a converted dataset,
``prepare`` builds TFRecords with the converter (``pipelines.build_tfrecords``) when missing,
``sources`` opens a dataset's ``TFRecordSource``, ``class_sampler`` / ``balanced_batches`` draw
class-balanced batches, ``preprocessing`` the image pipeline, ``image_header`` checks encoded
images before decoding them. Names are imported lazily so that ``python -m tfmetric.data.batches
--help`` answers before TensorFlow loads.
"""

from tfmetric.lazy_exports import lazy_exports

_EXPORTS = {
    "open_source": "sources",
    "TFRecordSource": "tfrecord_source",
    "ensure_tfrecords": "prepare",
    "ConversionError": "prepare",
    "load_manifest": "manifest",
    "ManifestError": "manifest",
    "SCHEMA_VERSION": "schema",
    "class_balanced_batches": "balanced_batches",
    "ClassBalancedSampler": "class_sampler",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
