"""SearchEngine: an image's bytes -> its nearest catalog items, the work behind ``POST /v1/search``.

The image is checked before the model sees it, with the checks the data pipeline uses
(``tfmetric.data.image_header``: format by magic bytes, the frame size read from the header only,
the model card's pixel limit, then a decode), so a decompression bomb is refused before anything
is allocated and every refusal names its reason. The model's own serving graph checks again
(``tfmetric.export.image_guard``); what it still rejects is a 422 too. The query is embedded by the
SavedModel's signatures (``serving_default`` for float and rescore, ``serving_binary`` for binary),
as ``python -m tfmetric.search`` embeds it, so both give the same neighbours for the same image.
"""

import io
import time

import tensorflow as tf
from PIL import Image

from tfmetric.data import image_header
from tfmetric.export import model_card
from tfmetric.search import embedder as embedder_lib
from tfmetric.search import index as index_lib
from tfmetric.search import modes as modes_lib
from tfmetric.search.query import check_compatible
from tfmetric.serve.requests import RequestError
from tfmetric.serve.versions import IndexVersions

ACCEPTED_FORMATS = ("jpeg", "png")
# The calibrated cut-off of each mode's score (tfmetric.search.calibrate) and whether a score at
# most the cut-off (Hamming) or at least it (cosine) is a match.
_MATCH_RULE = {modes_lib.FLOAT: ("cosine", 1), modes_lib.RESCORE: ("cosine", 1), modes_lib.BINARY: ("hamming", -1)}


def check_image(data, max_pixels):
    """Raises RequestError unless ``data`` is a JPEG/PNG within ``max_pixels`` that decodes."""
    try:
        fmt, _, _ = image_header.image_size(data)
        if fmt not in ACCEPTED_FORMATS:
            raise RequestError(415, f"unsupported image format {fmt!r}: send JPEG or PNG.")
        image_header.inspect_image(data, max_pixels)  # the pixel limit on the header's size, then a decode
    except image_header.ImageError as e:
        if e.reason == image_header.UNSUPPORTED_FORMAT:
            raise RequestError(415, f"not an image ({e.detail}): send JPEG or PNG bytes.") from None
        status = 413 if e.reason == image_header.TOO_MANY_PIXELS else 422
        raise RequestError(status, f"unusable image ({e.reason}: {e.detail}).") from None


def _warmup_image():
    out = io.BytesIO()
    Image.new("RGB", (32, 32), (128, 128, 128)).save(out, "JPEG")
    return out.getvalue()


class SearchEngine:
    """The loaded model and index versions of a service (built once, shared by its workers).

    Args:
      config: a ``tfmetric.serve.ServeConfig``.
    """

    def __init__(self, config):
        self.config = config
        if not tf.io.gfile.isdir(config.model):
            raise NotADirectoryError(
                f"model_dir is not a directory; pass saved_models/<name>/<version>. Received: model_dir={config.model}"
            )
        card = model_card.read_model_card(config.model)
        self.identity = embedder_lib.model_identity(config.model, card=card)
        self.max_pixels = model_card.card_max_pixels(card)
        self._float = embedder_lib.SavedModelEmbedder(config.model, embedder_lib.DEFAULT_SIGNATURE)
        self._binary = self._float.with_signature(embedder_lib.BINARY_SIGNATURE)
        self.versions = IndexVersions(config.index, self._load, config.poll_seconds)
        warm = _warmup_image()
        self._float.embed([warm])  # traces the signatures before the first request
        self._binary.embed([warm])

    def _load(self, directory):
        index = index_lib.load_index(directory)
        check_compatible(index, directory, self.identity)
        if self._float.output_width != index.dim:
            raise ValueError(
                f"The model gives {self._float.output_width}-dimensional embeddings, the index holds "
                f"{index.dim}-dimensional ones. Received: model_dir={self.config.model}, "
                f"index_dir={directory}"
            )
        rows = {}
        for row, item in enumerate(index.ids):
            rows.setdefault(item, row)
        return modes_lib.ModeSearcher(index, self.config.rescore_factor), rows

    def k_limit(self, snapshot):
        return min(self.config.max_k, snapshot.searcher.index.count)

    def search(self, request):
        """The answer to a parsed SearchRequest, as a JSON-ready dict; RequestError when refused."""
        start = time.perf_counter()
        snapshot = self.versions.current  # this request's index, whatever is switched meanwhile
        searcher = snapshot.searcher
        limit = self.k_limit(snapshot)
        if not 1 <= request.k <= limit:
            raise RequestError(
                422,
                f"k must be between 1 and {limit} (the index holds {searcher.index.count} "
                f"items, --max-k {self.config.max_k}). Received: k={request.k}",
            )
        if request.mode not in searcher.modes:
            raise RequestError(
                422,
                f"mode {request.mode!r} is not available on this index (kind "
                f"{searcher.index.kind}); it answers: {', '.join(searcher.modes)}.",
            )
        check_image(request.image, self.max_pixels)
        model = self._binary if request.mode == modes_lib.BINARY else self._float
        (result,) = model.embed([request.image])
        if result.error:
            raise RequestError(422, f"the model cannot decode the image ({result.error}).")
        found = searcher.neighbours(result.embedding, result.bits, request.k, request.mode)
        rule = self._match_rule(searcher.index, request.mode)
        neighbours = []
        for n in found:
            item = {"rank": n.rank, "id": n.id, "score": n.score, "source": n.source}
            if rule:
                item["match"] = bool(rule(n.score))
            neighbours.append(item)
        return {
            "neighbours": neighbours,
            "mode": request.mode,
            "model": self.model_info(),
            "index": self.index_info(snapshot),
            "took_ms": round(1000 * (time.perf_counter() - start), 3),
        }

    @staticmethod
    def _match_rule(index, mode):
        match = index.manifest.get("match")
        if not match:
            return None
        metric, sign = _MATCH_RULE[mode]
        threshold = match[metric]["threshold"]
        return (lambda s: s >= threshold) if sign > 0 else (lambda s: s <= threshold)

    def model_info(self):
        keys = ("name", "version", "path", "embedding_dim", "saved_model_checksum")
        return {key: self.identity.get(key) for key in keys}

    @staticmethod
    def index_info(snapshot):
        index = snapshot.searcher.index
        match = index.manifest.get("match")
        return {
            "version": snapshot.version,
            "path": snapshot.directory,
            "kind": index.kind,
            "count": index.count,
            "dim": index.dim,
            "modes": list(snapshot.searcher.modes),
            "match": {m: match[m]["threshold"] for m in ("cosine", "hamming")} if match else None,
        }

    def info(self):
        snapshot = self.versions.current
        config = self.config
        return {
            "model": self.model_info(),
            "index": self.index_info(snapshot),
            "modes": list(snapshot.searcher.modes),
            "rescore_factor": config.rescore_factor,
            "limits": {
                "max_k": self.k_limit(snapshot),
                "max_body_bytes": config.max_body_bytes,
                "max_pixels": self.max_pixels,
                "workers": config.workers,
                "queue": config.queue,
            },
        }

    def source_of(self, item):
        """The catalog source (path or URI) of id ``item`` in the served index; RequestError when none."""
        snapshot = self.versions.current
        row = snapshot.rows_by_id.get(item)
        if row is None:
            raise RequestError(404, f"no catalog item with id {item!r} in the served index.")
        source = snapshot.searcher.index.sources[row]
        if not source:
            raise RequestError(404, f"catalog item {item!r} has no source (its catalog recorded none).")
        return source
