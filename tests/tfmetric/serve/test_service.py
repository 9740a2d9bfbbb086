"""python -m tfmetric.serve over HTTP: the three modes against python -m tfmetric.search and numpy,
the answer's shape, match marks, info and health, thumbnails, every refused request, and a clean stop."""

import base64
import io
import json
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from tests import fixtures as fx
from tests.fixtures import MAX_BODY, MISSING_SOURCE, NO_SOURCE
from tfmetric.search import __main__ as search_cli
from tfmetric.search import query_index
from tfmetric.serve import __main__ as serve_cli


def png_declaring(width, height):
    """A valid PNG signature and IHDR announcing ``width`` x ``height`` (no pixel data follows)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk


def test_float_mode_equals_the_search_cli(service, catalog, image_of):
    status, answer = service.search(image_of("img-05"), "?k=12&mode=float")
    assert status == 200
    expected = query_index(catalog["flat"], catalog["model"], catalog["paths"]["img-05"], k=12).neighbours
    assert [n["id"] for n in answer["neighbours"]] == [n.id for n in expected]
    np.testing.assert_allclose([n["score"] for n in answer["neighbours"]], [n.score for n in expected], atol=1e-6)
    assert [n["rank"] for n in answer["neighbours"]] == list(range(1, 13))
    assert answer["neighbours"][0]["source"] == catalog["paths"]["img-05"]
    assert set(answer) == {"neighbours", "mode", "model", "index", "took_ms"} and answer["mode"] == "float"
    assert answer["model"]["name"] == "tiny" and answer["model"]["version"] == 1
    assert answer["index"]["kind"] == "flat" and answer["index"]["count"] == 12 and answer["took_ms"] > 0


def test_binary_mode_equals_the_binary_cli(service, catalog, image_of, capsys):
    status, answer = service.search(image_of("img-07"), "?k=12&mode=binary", "image/png")
    assert status == 200
    expected = query_index(catalog["binary"], catalog["model"], catalog["paths"]["img-07"], k=12, binary=True)
    assert [(n["id"], n["score"]) for n in answer["neighbours"]] == [(n.id, n.score) for n in expected.neighbours]
    capsys.readouterr()
    assert (
        search_cli.main(
            [
                "--index",
                catalog["binary"],
                "--model",
                catalog["model"],
                "--image",
                catalog["paths"]["img-07"],
                "--k",
                "3",
                "--binary",
            ]
        )
        == 0
    )
    printed = [line.split()[2] for line in capsys.readouterr().out.splitlines()[2:]]
    assert printed == [n["id"] for n in answer["neighbours"][:3]]


def test_rescore_equals_numpy_rerank_of_the_hamming_shortlist(service, catalog, image_of):
    vectors = catalog["vectors"] / np.linalg.norm(catalog["vectors"], axis=1, keepdims=True)
    bits = np.packbits(vectors > 0, axis=1)
    for item, k in (("img-02", 1), ("img-09", 3)):
        status, answer = service.search(image_of(item), f"?k={k}&mode=rescore")
        assert status == 200
        q = vectors[int(item[-2:])]
        qbits = np.packbits(q > 0)
        hamming = np.unpackbits(bits ^ qbits, axis=1).sum(1)
        shortlist = np.sort(np.argsort(hamming, kind="stable")[: min(12, 10 * k)])  # --rescore-factor 10
        cos = vectors[shortlist] @ q
        best = shortlist[np.argsort(-cos, kind="stable")[:k]]
        assert [n["id"] for n in answer["neighbours"]] == [f"img-{r:02d}" for r in best]
        np.testing.assert_allclose([n["score"] for n in answer["neighbours"]], np.sort(cos)[::-1][:k], atol=1e-5)


def test_json_body_and_match_marks(service, image_of):
    body = json.dumps({"b64": base64.b64encode(image_of("img-05")).decode(), "k": 4, "mode": "float"}).encode()
    status, answer = service.search(body, "?k=9&mode=binary", "application/json")  # the JSON fields win
    assert status == 200 and answer["mode"] == "float" and len(answer["neighbours"]) == 4
    assert [n["match"] for n in answer["neighbours"]] == [True, False, False, False]
    status, answer = service.search(image_of("img-05"), "?k=12&mode=binary")
    assert all(n["match"] == (n["score"] <= 0) for n in answer["neighbours"])
    assert {n["match"] for n in answer["neighbours"]} == {True, False}


def test_info_and_health(service):
    status, info, _ = service.request("/v1/info")
    assert status == 200 and info["modes"] == ["float", "binary", "rescore"]
    assert info["index"]["dim"] == 12 and info["index"]["count"] == 12 and info["index"]["version"] is None
    assert info["model"]["embedding_dim"] == 12 and info["limits"]["max_k"] == 12
    assert info["limits"]["max_body_bytes"] == MAX_BODY and info["index"]["match"]["hamming"] == 0
    assert service.request("/healthz")[:2] == (200, {"status": "ok", "index_version": None})


def test_thumbnails(service, catalog):
    status, data, headers = service.request("/v1/thumbnail?id=img-03")
    assert status == 200 and headers["Content-Type"] == "image/jpeg"
    with Image.open(io.BytesIO(data)) as image:
        with Image.open(catalog["paths"]["img-03"]) as original:
            assert image.format == "JPEG" and image.size == original.size  # small already: not enlarged
    for item, message in (
        (NO_SOURCE, "has no source"),
        (MISSING_SOURCE, "cannot read the catalog image"),
        ("../../etc/passwd", "no catalog item with id"),
    ):
        status, data, _ = service.request(f"/v1/thumbnail?id={item}")
        assert status == 404 and message in data["error"]


BAD_REQUESTS = [
    ("empty body", b"", "image/jpeg", "", 400, "empty request body"),
    ("not an image", b"hello, world", "image/jpeg", "", 415, "not an image"),
    ("truncated JPEG", fx.truncated_jpeg_bytes(), "image/jpeg", "", 422, "truncated"),
    ("GIF", fx.image_bytes("GIF"), "image/gif", "", 415, "Content-Type 'image/gif' is not accepted"),
    ("GIF as JPEG", fx.image_bytes("GIF"), "image/jpeg", "", 415, "unsupported image format 'gif'"),
    ("PNG of 100,000 x 100,000", png_declaring(100_000, 100_000), "image/png", "", 413, "too_many_pixels"),
    ("JPEG over the model's limit", fx.jpeg_claiming_size(100, 100), "image/jpeg", "", 413, "too_many_pixels"),
    ("body over the limit", b"\xff\xd8\xff" + bytes(MAX_BODY), "image/jpeg", "", 413, f"limit of {MAX_BODY} bytes"),
    ("k = 0", None, "image/jpeg", "?k=0", 422, "k must be between 1 and 12"),
    ("k < 0", None, "image/jpeg", "?k=-3", 422, "Received: k=-3"),
    ("k over the index", None, "image/jpeg", "?k=13", 422, "the index holds 12 items"),
    ("k not a number", None, "image/jpeg", "?k=ten", 422, "k must be an integer"),
    ("unknown mode", None, "image/jpeg", "?mode=fuzzy", 422, "unknown mode 'fuzzy'"),
    ("bad JSON", b"{", "application/json", "", 400, "not valid JSON"),
    ("JSON without b64", b'{"k": 3}', "application/json", "", 400, '"b64"'),
    ("bad base64", b'{"b64": "%%%"}', "application/json", "", 400, "not valid base64"),
]


@pytest.mark.parametrize(
    "name, body, content_type, query, status, message", BAD_REQUESTS, ids=[case[0] for case in BAD_REQUESTS]
)
def test_bad_requests_get_a_json_error_and_the_service_stays_up(
    service, image_of, name, body, content_type, query, status, message
):
    got, answer = service.search(image_of("img-01") if body is None else body, query, content_type)
    assert got == status and set(answer) == {"error"} and message in answer["error"], answer
    assert service.search(image_of("img-01"), "?k=1")[0] == 200


def test_unknown_routes_and_methods_answer_json(service):
    assert service.request("/v2/nothing")[:2] == (404, {"error": "Not Found"})
    status, answer, _ = service.request("/v1/search")  # GET
    assert status == 405 and "error" in answer


def test_cli_errors_name_the_flag(catalog, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        serve_cli.main(["--index", str(tmp_path / "none"), "--model", catalog["model"]])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "python -m tfmetric.serve: error: --index: " in err and "not a directory" in err
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "4").mkdir()  # a version still being built
    with pytest.raises(SystemExit):
        serve_cli.main(["--index", str(tmp_path / "empty"), "--model", catalog["model"]])
    assert "holding a complete integer version" in capsys.readouterr().err
    for flag, value in (("--workers", "0"), ("--port", "70000x"), ("--poll-seconds", "-1")):
        with pytest.raises(SystemExit) as e:
            serve_cli.main(["--index", catalog["flat"], "--model", catalog["model"], flag, value])
        assert e.value.code == 2 and f"argument {flag}" in capsys.readouterr().err
