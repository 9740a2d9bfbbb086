"""TFRecord schema and manifest, image headers, preparation of TFRecords, and input pipelines."""
