"""A picture of retrieval on held-out classes: queries beside their top float and binary neighbours.

Each row is one query (blue frame) followed by its ``k`` nearest gallery images by cosine on the
float embeddings, then by Hamming distance on their sign bits; a neighbour of the query's class
is framed green, any other red, and each carries its score. The query itself is never its own
neighbour (self-retrieval excludes it by index, as the metrics do). Training writes the grid as
``retrieval.png`` in the workdir and logs it to TensorBoard at every evaluation.
"""

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from tfmetric.metrics.knn import pack_bits

RIGHT, WRONG, QUERY = (40, 170, 60), (215, 40, 40), (40, 100, 220)
_FRAME, _GAP, _CAPTION = 3, 6, 14


def pick_queries(labels, n):
    """Indices of ``n`` queries spread over the classes: the first image of evenly spaced classes."""
    labels = np.asarray(labels)
    classes, first = np.unique(labels, return_index=True)
    chosen = np.linspace(0, len(classes) - 1, num=min(n, len(classes))).round().astype(int)
    return first[np.unique(chosen)]


def neighbours(query_ids, query, gallery=None, k=5):
    """Top-``k`` gallery rows per query: float (indices, cosines) and binary (indices, Hamming).

    Ties are broken by gallery index (stable sort), so the picture is deterministic.
    """
    self_retrieval = gallery is None
    gallery = query if self_retrieval else gallery
    q = np.asarray(query[query_ids], np.float32)
    cosine = q @ np.asarray(gallery, np.float32).T
    q_bits, g_bits = pack_bits(q), pack_bits(np.asarray(gallery))
    hamming = np.unpackbits(q_bits[:, None, :] ^ g_bits[None, :, :], axis=2).sum(2).astype(np.int64)
    if self_retrieval:
        rows = np.arange(len(query_ids))
        cosine[rows, query_ids] = -np.inf
        hamming[rows, query_ids] = np.iinfo(np.int64).max
    by_cosine = np.argsort(-cosine, axis=1, kind="stable")[:, :k]
    by_hamming = np.argsort(hamming, axis=1, kind="stable")[:, :k]
    return (
        (by_cosine, np.take_along_axis(cosine, by_cosine, 1)),
        (by_hamming, np.take_along_axis(hamming, by_hamming, 1)),
    )


def _tile(image, colour, caption, size, font):
    tile = Image.new("RGB", (size + 2 * _FRAME, size + 2 * _FRAME + _CAPTION), "white")
    tile.paste(Image.new("RGB", (size + 2 * _FRAME, size + 2 * _FRAME), colour), (0, 0))
    tile.paste(Image.fromarray(image).resize((size, size), Image.NEAREST), (_FRAME, _FRAME))
    ImageDraw.Draw(tile).text((_FRAME, size + 2 * _FRAME + 1), caption, fill="black", font=font)
    return tile


def render(query_images, query_labels, float_hits, binary_hits, gallery_images, gallery_labels, size=64):
    """The grid as uint8 ``[H, W, 3]``.

    Args:
      query_images: uint8 ``[q, h, w, 3]`` images of the queries, in row order.
      query_labels: ``[q]`` their labels.
      float_hits, binary_hits: ``(indices [q, k], scores [q, k])`` into the gallery.
      gallery_images: dict gallery index -> uint8 image, holding every index of the hits.
      gallery_labels: ``[n]`` gallery labels.
      size: side of each thumbnail in pixels.
    """
    font = ImageFont.load_default()
    k = float_hits[0].shape[1]
    tile_w, tile_h = size + 2 * _FRAME + _GAP, size + 2 * _FRAME + _CAPTION + _GAP
    header = _CAPTION + _GAP
    width = tile_w * (1 + 2 * k) + 2 * _GAP
    canvas = Image.new("RGB", (width, header + tile_h * len(query_images)), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((0, 0), "query", fill="black", font=font)
    draw.text((tile_w + _GAP, 0), f"top {k}: float (cosine)", fill="black", font=font)
    draw.text((tile_w * (1 + k) + 2 * _GAP, 0), f"top {k}: binary (Hamming bits)", fill="black", font=font)
    for row, (image, label) in enumerate(zip(query_images, query_labels)):
        y = header + row * tile_h
        canvas.paste(_tile(image, QUERY, f"class {int(label)}", size, font), (0, y))
        for block, ((ids, scores), fmt) in enumerate(((float_hits, "{:.3f}"), (binary_hits, "{:d}"))):
            x0 = tile_w * (1 + block * k) + _GAP * (1 + block)
            for col, (index, score) in enumerate(zip(ids[row], scores[row])):
                colour = RIGHT if gallery_labels[index] == label else WRONG
                tile = _tile(gallery_images[int(index)], colour, fmt.format(score.item()), size, font)
                canvas.paste(tile, (x0 + col * tile_w, y))
    return np.asarray(canvas)


def decode_records(raw_dataset, wanted):
    """Decoded uint8 images of the records at indices ``wanted``, in one pass that stops early."""
    wanted, images = {int(i) for i in np.ravel(wanted)}, {}
    for i, (encoded, _) in enumerate(raw_dataset.as_numpy_iterator()):
        if i in wanted:
            images[i] = np.asarray(Image.open(io.BytesIO(encoded)).convert("RGB"))
            if len(images) == len(wanted):
                break
    return images


def grid_for_source(source, module, embedded, num_queries=8, k=5):
    """The grid of an evaluation: ``embedded[split] = (embeddings, labels)`` of the evaluated splits,
    images read back from ``source`` (a ``TFRecordSource``) in the same order."""
    query, query_labels = embedded[module.QUERY_SPLIT]
    gallery, gallery_labels = embedded.get(module.GALLERY_SPLIT, (None, query_labels))
    ids = pick_queries(query_labels, num_queries)
    float_hits, binary_hits = neighbours(ids, query, gallery, k)
    hits = np.concatenate([float_hits[0].ravel(), binary_hits[0].ravel()])
    if gallery is None:
        gallery_images = query_images = decode_records(
            source.raw_dataset(module.QUERY_SPLIT), np.concatenate([ids, hits])
        )
    else:
        query_images = decode_records(source.raw_dataset(module.QUERY_SPLIT), ids)
        gallery_images = decode_records(source.raw_dataset(module.GALLERY_SPLIT), hits)
    return render(
        [query_images[int(i)] for i in ids], query_labels[ids], float_hits, binary_hits, gallery_images, gallery_labels
    )


def encode_png(grid):
    buffer = io.BytesIO()
    Image.fromarray(grid).save(buffer, format="PNG")
    return buffer.getvalue()
