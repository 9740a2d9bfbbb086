"""The tests' helpers: tiny images, fake raw datasets in the exact published layouts, scripts in a
fresh interpreter, a tiny training config and a stand-in TF Serving gRPC server.

Images are a few dozen pixels and a few hundred bytes; a fake dataset has a handful of classes.
Every writer creates missing parent directories and returns the path it wrote. (conftest files
hold fixtures only; tests import helpers from here.)
"""

import concurrent.futures
import contextlib
import io
import json
import os
import struct
import subprocess
import sys

import grpc
import numpy as np
import tensorflow as tf
from PIL import Image

from tfmetric import config as config_lib
from tfmetric.export import serving_protos


def color(i: int):
    """A distinct, deterministic RGB colour for index ``i``."""
    return ((37 * i + 60) % 256, (91 * i + 120) % 256, (53 * i + 200) % 256)


def image_bytes(fmt: str = "JPEG", size=(32, 32), rgb=(128, 64, 32), mode: str = "RGB") -> bytes:
    """An encoded flat image (``fmt`` as PIL names it: JPEG, PNG, GIF, BMP, WEBP, TIFF)."""
    out = io.BytesIO()
    Image.new(mode, size, rgb if mode == "RGB" else rgb[0]).save(out, fmt)
    return out.getvalue()


def jpeg_bytes(size=(32, 32), rgb=(128, 64, 32)) -> bytes:
    return image_bytes("JPEG", size, rgb)


def png_bytes(size=(32, 32), rgb=(128, 64, 32)) -> bytes:
    return image_bytes("PNG", size, rgb)


def noise_jpeg_bytes(size=(64, 64), seed: int = 0) -> bytes:
    """A JPEG of random pixels: its entropy-coded data is long enough to cut or damage."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=90)
    return out.getvalue()


def truncated_jpeg_bytes() -> bytes:
    data = noise_jpeg_bytes()
    return data[: len(data) // 2]


def corrupt_jpeg_bytes() -> bytes:
    """Valid headers, then garbage in the scan data."""
    data = bytearray(noise_jpeg_bytes())
    for i in range(len(data) // 3, len(data) - 2, 7):
        data[i] = 0xFF
    return bytes(data)


def jpeg_claiming_size(height: int, width: int) -> bytes:
    """A tiny JPEG whose frame header announces ``height`` x ``width`` (a decompression bomb stand-in)."""
    data = bytearray(jpeg_bytes((8, 8)))
    i = 2
    while True:
        marker, length = data[i + 1], struct.unpack(">H", data[i + 2 : i + 4])[0]
        if 0xC0 <= marker <= 0xC2:
            data[i + 5 : i + 9] = struct.pack(">HH", height, width)
            return bytes(data)
        i += 2 + length


def write_bytes(path: str, data: bytes) -> str:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return path


def write_jpeg(path: str, size=(32, 32), rgb=(128, 64, 32)) -> str:
    return write_bytes(path, jpeg_bytes(size, rgb))


def write_png(path: str, size=(32, 32), rgb=(128, 64, 32)) -> str:
    return write_bytes(path, png_bytes(size, rgb))


def write_text(path: str, lines) -> str:
    return write_bytes(path, "".join(f"{line}\n" for line in lines).encode("utf-8"))


# Fake raw datasets. Each takes {class id: number of images} per split and writes real tiny JPEGs
# (distinct colours) where the published layout puts them; the root is returned.


def make_cars196(root: str, images_per_class=None) -> str:
    """``cars_annos.mat`` (a MATLAB struct array, as scipy.io.savemat writes it) + ``car_ims/``."""
    import scipy.io

    images_per_class = images_per_class or {1: 3, 2: 2, 99: 2, 196: 3}
    fields = ["relative_im_path", "bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "test"]
    total = sum(images_per_class.values())
    annotations = np.zeros((1, total), dtype=[(f, "O") for f in fields])
    n = 0
    for class_id, count in sorted(images_per_class.items()):
        for k in range(count):
            rel = f"car_ims/{n + 1:06d}.jpg"
            write_jpeg(os.path.join(root, rel), rgb=color(n))
            annotations[0, n] = (
                np.array([rel]),
                np.array([[1]], np.uint8),
                np.array([[2]], np.uint8),
                np.array([[30]], np.uint16),
                np.array([[20]], np.uint16),
                np.array([[class_id]], np.uint8),
                np.array([[k % 2]], np.uint8),
            )
            n += 1
    class_names = np.empty((1, 196), dtype=object)
    for i in range(196):
        class_names[0, i] = np.array([f"Maker Model {i + 1} 2012"])
    os.makedirs(root, exist_ok=True)
    scipy.io.savemat(os.path.join(root, "cars_annos.mat"), {"annotations": annotations, "class_names": class_names})
    return root


def make_cub200(root: str, images_per_class=None) -> str:
    """``CUB_200_2011/{images,image_class_labels,classes}.txt`` + ``images/NNN.Name/*.jpg``."""
    images_per_class = images_per_class or {1: 3, 2: 2, 101: 2, 200: 3}
    base = os.path.join(root, "CUB_200_2011")
    class_dir = {c: f"{c:03d}.Bird_{c}" for c in range(1, 201)}
    images, labels, n = [], [], 0
    for class_id, count in sorted(images_per_class.items()):
        for k in range(count):
            n += 1
            rel = f"{class_dir[class_id]}/Bird_{class_id}_{k:04d}.jpg"
            write_jpeg(os.path.join(base, "images", rel), rgb=color(n))
            images.append(f"{n} {rel}")
            labels.append(f"{n} {class_id}")
    write_text(os.path.join(base, "images.txt"), images)
    write_text(os.path.join(base, "image_class_labels.txt"), labels)
    write_text(os.path.join(base, "classes.txt"), [f"{c} {d}" for c, d in class_dir.items()])
    return root


def make_sop(root: str, train=None, test=None) -> str:
    """``Stanford_Online_Products/Ebay_{train,test}.txt`` + ``<super>_final/*.JPG``."""
    train = train or {1: 2, 2: 3, 3: 2}
    test = test or {11319: 2, 11320: 3}
    base = os.path.join(root, "Stanford_Online_Products")
    n = 0
    for name, classes in (("Ebay_train.txt", train), ("Ebay_test.txt", test)):
        rows = ["image_id class_id super_class_id path"]
        for class_id, count in sorted(classes.items()):
            super_id = 1 + class_id % 2
            folder = ("bicycle_final", "chair_final")[super_id - 1]
            for k in range(count):
                n += 1
                rel = f"{folder}/{100000000000 + class_id}_{k}.JPG"
                write_jpeg(os.path.join(base, rel), rgb=color(n))
                rows.append(f"{len(rows)} {class_id} {super_id} {rel}")
        write_text(os.path.join(base, name), rows)
    return root


def make_inshop(root: str, train=None, query=None, gallery=None) -> str:
    """``list_eval_partition.txt`` (count, header, rows) + ``img/<GENDER>/<Cat>/<item>/*.jpg``."""
    train = train or {"id_00000001": 2, "id_00000003": 3}
    query = query or {"id_00000002": 1, "id_00000004": 2}
    gallery = gallery or {"id_00000002": 2, "id_00000004": 1, "id_00000005": 1}
    rows, n = [], 0
    for split, items in (("train", train), ("query", query), ("gallery", gallery)):
        for item, count in sorted(items.items()):
            for k in range(count):
                n += 1
                rel = f"img/WOMEN/Dresses/{item}/{k + 1:02d}_{n}_{split[:5]}.jpg"
                write_jpeg(os.path.join(root, rel), rgb=color(n))
                # The real file pads columns with runs of spaces.
                rows.append(f"{rel:<60} {item:<20} {split}")
    write_text(
        os.path.join(root, "list_eval_partition.txt"), [str(len(rows)), "image_name item_id evaluation_status", *rows]
    )
    return root


def make_imagefolder(root: str, images_per_class=None) -> str:
    """``<root>/<class_name>/<image>.jpg``."""
    images_per_class = images_per_class or {"apple": 2, "banana": 3, "cherry": 2, "date": 2}
    n = 0
    for name, count in sorted(images_per_class.items()):
        for k in range(count):
            n += 1
            write_jpeg(os.path.join(root, name, f"img_{k}.jpg"), rgb=color(n))
    return root


# The serve tests' catalog (tests/tfmetric/serve/conftest.py): the neighbours the page shows as grey
# placeholders, and the service's request body limit.
NO_SOURCE, MISSING_SOURCE = "img-10", "img-11"
MAX_BODY = 60_000

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Prepended to a script run by run_script: two logical CPU devices, so tf.distribute strategies get
# two replicas. Logical devices must be configured before TensorFlow initialises: a fresh interpreter.
TWO_LOGICAL_CPUS = r"""
import json, sys
import numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
"""
RESULT_PREFIX = "RESULT "


def start_script(script: str, *args: str, **env) -> subprocess.Popen:
    """Starts ``python -c script args`` in the repository root with ``env`` added to the environment."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO_ROOT, **env)
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        cwd=REPO_ROOT,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def script_result(proc: subprocess.Popen, timeout: float = 600):
    """Waits for a start_script process; (the JSON it printed after RESULT_PREFIX, its stdout).

    Fails the test with the end of its output unless it exited 0 and printed a result line.
    """
    out, err = proc.communicate(timeout=timeout)
    lines = [line for line in out.splitlines() if line.startswith(RESULT_PREFIX)]
    assert proc.returncode == 0 and lines, out[-2000:] + err[-3000:]
    return json.loads(lines[0][len(RESULT_PREFIX) :]), out


def run_script(script: str, *args: str, **env):
    """start_script, then script_result."""
    return script_result(start_script(script, *args, **env))


def tiny_config(data_dir, **train):
    """digits, InceptionV1 at 32x32, 16-d, 3 steps per epoch: seconds per epoch on a CPU."""
    config = config_lib.preset("digits")
    overrides = [
        f"data.data_dir={data_dir}",
        "data.batch_size=20",
        "data.images_per_class=4",
        "model.embedding_dim=16",
        "train.steps_per_epoch=3",
        "train.epochs_per_step=1",
        "train.num_steps=2",
        "train.warmup_epochs=1",
        "train.test_every_n_epochs=1",
        "eval.nmi=false",
        "eval.projector_max_items=64",
    ]
    overrides += [f"train.{k}={v}" for k, v in train.items()]
    return config_lib.apply_overrides(config, overrides)


@contextlib.contextmanager
def stand_in_tf_serving(loaded):
    """A gRPC PredictionService answering from the signatures of ``loaded`` (a tf.saved_model.load
    result) as TF Serving would, decoding requests with the runtime protos of
    tfmetric.export.serving_protos; an InvalidArgument of the graph aborts with INVALID_ARGUMENT.

    Yields (target ``127.0.0.1:PORT``, the list of model names requested so far).
    """
    request_class = serving_protos.message_class("PredictRequest")
    response_class = serving_protos.message_class("PredictResponse")
    calls = []

    def predict(request, context):
        calls.append(request.model_spec.name)
        inputs = {k: tf.constant(serving_protos.from_tensor_proto(v)) for k, v in request.inputs.items()}
        try:
            outputs = loaded.signatures[request.model_spec.signature_name](**inputs)
        except tf.errors.InvalidArgumentError as e:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, e.message)
        response = response_class()
        response.model_spec.CopyFrom(request.model_spec)
        for key, value in outputs.items():
            response.outputs[key].CopyFrom(serving_protos.to_tensor_proto(value.numpy()))
        return response

    server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "tensorflow.serving.PredictionService",
                {
                    "Predict": grpc.unary_unary_rpc_method_handler(
                        predict,
                        request_deserializer=request_class.FromString,
                        response_serializer=response_class.SerializeToString,
                    )
                },
            )
        ]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}", calls
    finally:
        server.stop(None)
