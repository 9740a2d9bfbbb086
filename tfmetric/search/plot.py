"""plot_neighbours: a picture of a query image beside its nearest catalog items.

The query sits in the left column with a coloured frame; the neighbours fill a grid to its right,
best first, each titled with its rank, id and score. Images are read from each neighbour's source,
an image file or a TFRecord record (``image_source``). A neighbour whose image cannot be read (no
source recorded; a moved file; an undecodable one) is drawn as a grey
placeholder naming its id, so the figure is always complete. matplotlib's object API with the Agg
canvas is used (no pyplot state, no display needed).
"""

import io
import math

import numpy as np
import tensorflow as tf
from PIL import Image

from tfmetric.search import image_source

THUMBNAIL = 256
MAX_COLUMNS = 5
_TITLE_CHARS = 26


def load_thumbnail(source, size=THUMBNAIL):
    """uint8 RGB array no larger than ``size`` of the image at ``source`` (an image path or URI, or
    a TFRecord ``<file>#offset=<N>``: ``image_source``), or None when it cannot be read."""
    if not source:
        return None
    try:
        return thumbnail(image_source.read_image_bytes(source), size)
    except (OSError, ValueError, tf.errors.OpError, Image.DecompressionBombError):
        return None


def thumbnail(encoded, size=THUMBNAIL):
    """uint8 RGB array of encoded image bytes, scaled down to fit ``size`` (raises if undecodable)."""
    image = Image.open(io.BytesIO(encoded))
    image.draft("RGB", (size, size))  # JPEG: decode at a reduced scale
    image = image.convert("RGB")
    image.thumbnail((size, size))
    return np.asarray(image)


def _short(text):
    text = str(text)
    return text if len(text) <= _TITLE_CHARS else "…" + text[-(_TITLE_CHARS - 1) :]


def _score(score, metric):
    return f"Hamming {int(score)}" if metric == "hamming" else f"cosine {score:.3f}"


def _draw(ax, image, title, frame=None):
    if image is None:
        ax.set_facecolor("0.85")
        ax.text(
            0.5, 0.5, "image\nunavailable", ha="center", va="center", color="0.35", fontsize=9, transform=ax.transAxes
        )
    else:
        ax.imshow(image)
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(frame is not None or image is None)
        if frame:
            spine.set_edgecolor(frame)
            spine.set_linewidth(3)


def plot_neighbours(query_encoded, neighbours, output, metric="cosine", query_label="query", dpi=100):
    """Writes the figure to ``output`` (format from the extension, e.g. ``.png``); returns ``output``.

    Args:
      query_encoded: the query image's encoded bytes.
      neighbours: ``tfmetric.search.Neighbour`` list (rank, id, score, source), best first.
      metric: ``cosine`` or ``hamming``, how scores are labelled.
      query_label: title of the query panel (e.g. its file name).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    columns = max(1, min(len(neighbours), MAX_COLUMNS))
    rows = max(1, math.ceil(len(neighbours) / MAX_COLUMNS))
    figure = Figure(figsize=(2.3 * (columns + 1), 2.5 * rows), layout="constrained")
    FigureCanvasAgg(figure)
    grid = figure.add_gridspec(rows, columns + 1)
    try:
        query_image = thumbnail(query_encoded)
    except (OSError, ValueError):
        query_image = None
    _draw(figure.add_subplot(grid[0, 0]), query_image, f"{_short(query_label)}\n(query)", frame="tab:red")
    for i, neighbour in enumerate(neighbours):
        ax = figure.add_subplot(grid[i // MAX_COLUMNS, 1 + i % MAX_COLUMNS])
        _draw(
            ax,
            load_thumbnail(neighbour.source),
            f"{neighbour.rank}. {_short(neighbour.id)}\n{_score(neighbour.score, metric)}",
        )
    figure.savefig(output, dpi=dpi)
    return output
