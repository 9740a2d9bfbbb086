"""Send images to a TF Serving instance that serves a tfmetric SavedModel; print their embeddings.

Start the server first (see README, "Serving"), e.g.
  docker run -p 8500:8500 -p 8501:8501 -v "$PWD/saved_models/cars196:/models/cars196" \\
      -e MODEL_NAME=cars196 tensorflow/serving

REST, standard library only:
  python examples/serving_client.py --model cars196 photo1.jpg photo2.png
  python examples/serving_client.py --model cars196 --signature serving_binary photo1.jpg
gRPC (needs grpcio, and TensorFlow for the protos, through tfmetric.export.serving_protos):
  python examples/serving_client.py --grpc localhost:8500 --model cars196 photo1.jpg

Images are sent as their original bytes (JPEG or PNG); the model decodes, resizes, crops and
normalises them itself. ``serving_binary`` returns ceil(D/8) bytes per image: sign bits packed
MSB-first like numpy.packbits(embedding > 0), zero-padded; compare codes by Hamming distance.
"""

import argparse
import base64
import json
import sys
import urllib.error
import urllib.request

SIGNATURES = {"serving_default": "embedding", "serving_binary": "embedding_bits"}


class ServingError(RuntimeError):
    """The server rejected the request (e.g. InvalidArgument for a malformed image)."""


def rest_predict(url, model, signature, images, version=None, timeout=60.0):
    """POST ``/v1/models/<model>[/versions/<v>]:predict`` -> one output row per image.

    Args:
      url: TF Serving's REST address, e.g. ``http://localhost:8501``.
      images: list of encoded image bytes.
    """
    body = {
        "signature_name": signature,
        "instances": [{"b64": base64.b64encode(data).decode("ascii")} for data in images],
    }
    path = f"/v1/models/{model}" + (f"/versions/{version}" if version else "") + ":predict"
    request = urllib.request.Request(
        url.rstrip("/") + path,
        data=json.dumps(body).encode("utf-8"),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.load(response)["predictions"]
    except urllib.error.HTTPError as e:
        detail = e.read().decode("utf-8", "replace")
        try:
            detail = json.loads(detail).get("error", detail)
        except ValueError:
            pass
        raise ServingError(f"HTTP {e.code} from {url}{path}: {detail}") from None


def grpc_predict(target, model, signature, images, version=None, timeout=60.0):
    """PredictionService/Predict over gRPC -> one output row per image (numpy rows)."""
    import grpc
    import numpy as np

    from tfmetric.export import serving_protos

    request = serving_protos.predict_request(model, signature, {"image_bytes": np.array(images, dtype=object)}, version)
    response_class = serving_protos.message_class("PredictResponse")
    with grpc.insecure_channel(target) as channel:
        predict = channel.unary_unary(
            serving_protos.PREDICT_METHOD,
            request_serializer=lambda message: message.SerializeToString(),
            response_deserializer=response_class.FromString,
        )
        try:
            response = predict(request, timeout=timeout)
        except grpc.RpcError as e:
            raise ServingError(f"gRPC {e.code().name} from {target}: {e.details()}") from None
    return list(serving_protos.from_tensor_proto(response.outputs[SIGNATURES[signature]]))


def describe(path, row, signature):
    if signature == "serving_binary":
        return f"{path}: {len(row) * 8}-bit code {bytes(int(v) for v in row).hex()}"
    head = ", ".join(f"{float(v):+.4f}" for v in row[:4])
    return f"{path}: {len(row)}-d embedding [{head}, ...]"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", nargs="+", help="JPEG or PNG files")
    p.add_argument("--model", required=True, help="TF Serving model name (the directory under its base path)")
    p.add_argument("--signature", default="serving_default", choices=sorted(SIGNATURES))
    p.add_argument("--version", type=int, default=None, help="model version (default: the latest served)")
    p.add_argument("--url", default="http://localhost:8501", help="REST address (default: %(default)s)")
    p.add_argument("--grpc", default=None, metavar="HOST:PORT", help="use gRPC at this address instead of REST")
    p.add_argument("--json", action="store_true", help="print the raw output rows as JSON")
    args = p.parse_args(argv)

    images = []
    for path in args.images:
        with open(path, "rb") as f:
            images.append(f.read())
    try:
        if args.grpc:
            rows = grpc_predict(args.grpc, args.model, args.signature, images, args.version)
        else:
            rows = rest_predict(args.url, args.model, args.signature, images, args.version)
    except (ServingError, OSError) as e:
        print(f"serving_client: error: {e}", file=sys.stderr)
        return 1
    rows = [[v.item() if hasattr(v, "item") else v for v in row] for row in rows]
    if args.json:
        print(json.dumps(dict(zip(args.images, rows))))
    else:
        for path, row in zip(args.images, rows):
            print(describe(path, row, args.signature))
    return 0


if __name__ == "__main__":
    sys.exit(main())
