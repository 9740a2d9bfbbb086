"""The TFRecord schema: exact feature names, round trip through tf.data, argument checks."""

import pytest
import tensorflow as tf

from tests import fixtures as fx
from tfmetric.data import schema


def example_args(**overrides):
    args = dict(
        encoded=fx.jpeg_bytes((6, 4)),
        image_format="jpeg",
        height=4,
        width=6,
        label=3,
        class_name="017",
        image_id="017/a.jpg",
    )
    args.update(overrides)
    return args


def test_feature_names_follow_the_contract():
    assert sorted(schema.FEATURE_SPEC) == sorted(
        [
            "image/encoded",
            "image/format",
            "image/height",
            "image/width",
            "image/class/label",
            "image/class/name",
            "image/id",
        ]
    )
    assert isinstance(schema.SCHEMA_VERSION, int)


def test_round_trip_through_a_tfrecord_file(tmp_path):
    path = str(tmp_path / "x.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        writer.write(schema.serialize_example(**example_args()))
        writer.write(schema.make_example(**example_args(label=4, image_format="png", image_id="b")).SerializeToString())
    rows = list(tf.data.TFRecordDataset(path).map(schema.parse_example))
    assert len(rows) == 2
    first = rows[0]
    assert first["image/encoded"].numpy() == example_args()["encoded"]
    assert (first["image/format"].numpy(), first["image/class/name"].numpy(), first["image/id"].numpy()) == (
        b"jpeg",
        b"017",
        b"017/a.jpg",
    )
    assert (int(first["image/height"]), int(first["image/width"]), int(first["image/class/label"])) == (4, 6, 3)
    assert tf.io.decode_image(first["image/encoded"]).shape == (4, 6, 3)
    assert int(rows[1]["image/class/label"]) == 4


def test_parse_example_takes_a_batch():
    batch = tf.constant([schema.serialize_example(**example_args(label=k)) for k in range(3)])
    parsed = schema.parse_example(batch)
    assert parsed["image/class/label"].numpy().tolist() == [0, 1, 2]
    ds = tf.data.Dataset.from_tensor_slices(batch).batch(2).map(schema.parse_example)
    assert [b["image/id"].shape[0] for b in ds] == [2, 1]


def test_serialization_is_deterministic():
    assert schema.serialize_example(**example_args()) == schema.serialize_example(**example_args())


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(image_format="gif"), "image_format"),
        (dict(height=0), "height"),
        (dict(label=-1), "label"),
    ],
)
def test_rejects_bad_arguments(overrides, message):
    with pytest.raises(ValueError, match=message):
        schema.make_example(**example_args(**overrides))


@pytest.mark.parametrize("old, new", [(3, 3), (127, 128), (300, 2), (0, 2**40)])
def test_relabel_changes_the_label_only(old, new):
    """Across varint widths: the same bytes as serializing with the new label in the first place."""
    before = schema.serialize_example(**example_args(label=old, class_name="ü/017", image_format="png"))
    after = schema.relabel(before, new)
    assert after == schema.serialize_example(**example_args(label=new, class_name="ü/017", image_format="png"))
    parsed = schema.parse_example(after)
    assert int(parsed[schema.LABEL]) == new and parsed[schema.CLASS_NAME].numpy() == "ü/017".encode()
    with pytest.raises(ValueError, match="label"):
        schema.relabel(before, -1)
