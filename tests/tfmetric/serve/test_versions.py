"""Index versions without downtime: the highest complete version is served, a new one is switched to
atomically while requests keep being answered, requests in flight finish on their version; bounded
concurrency answers 503; SIGINT stops the service cleanly."""

import concurrent.futures
import io
import os
import shutil
import signal
import threading
import time

import numpy as np
from PIL import Image

from tests.tfmetric.serve.service import Service
from tfmetric.search import build_index, model_identity, write_catalog
from tfmetric.serve.versions import IndexVersions


def _version_2(catalog, directory):
    """Version 2 of the catalog: the same embeddings under other ids ("v2-..."), built into ``directory``."""
    ids = [f"v2-img-{i:02d}" for i in range(12)]
    embeddings = os.path.join(os.path.dirname(directory), "embeddings-2")
    write_catalog(embeddings, ids, catalog["vectors"], model=model_identity(catalog["model"]))
    build_index(embeddings, directory)


def test_snapshots_outlive_a_switch(catalog, tmp_path):
    root = tmp_path / "versions"
    shutil.copytree(catalog["flat"], root / "1")
    (root / "7").mkdir()  # an unfinished build (no manifest): never served
    versions = IndexVersions(str(root), lambda d: (d, {}))
    before = versions.current
    assert before.version == 1 and not versions.refresh()
    shutil.copytree(catalog["flat"], root / "3")
    assert versions.refresh() and versions.current.version == 3 and versions.current.searcher.endswith("3")
    assert before.version == 1 and before.searcher.endswith("1")  # what a request in flight holds


def test_new_version_is_served_without_downtime(catalog, image_of, tmp_path):
    root = tmp_path / "versions"
    shutil.copytree(catalog["flat"], root / "1")
    svc = Service(
        "--index", str(root), "--model", catalog["model"], "--poll-seconds", "0.2", "--workers", "2", "--queue", "8"
    )
    answers, stop = [], threading.Event()

    def client():
        while not stop.is_set():
            answers.append(svc.search(image_of("img-04"), "?k=5"))

    try:
        threads = [threading.Thread(target=client) for _ in range(2)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        _version_2(catalog, str(tmp_path / "building"))
        os.rename(tmp_path / "building", root / "2")  # appears complete at once
        deadline = time.monotonic() + 60
        while svc.request("/healthz")[1]["index_version"] != 2:
            assert time.monotonic() < deadline, "version 2 was not picked up"
            time.sleep(0.2)
        time.sleep(0.5)
        stop.set()
        for t in threads:
            t.join()
    finally:
        stop.set()
        status, out = svc.stop(signal.SIGINT)
    assert status == 0 and out.rstrip().endswith("Stopped (SIGINT)."), out
    assert all(code == 200 for code, _ in answers), [a for a in answers if a[0] != 200][:3]
    seen = []
    for _, answer in answers:
        version = answer["index"]["version"]
        prefix = "v2-img-" if version == 2 else "img-"
        assert all(n["id"].startswith(prefix) for n in answer["neighbours"])  # one version per answer
        seen.append(version)
    assert seen[0] == 1 and seen[-1] == 2 and seen == sorted(seen)
    first_v2 = next(a for _, a in answers if a["index"]["version"] == 2)
    last_v1 = [a for _, a in answers if a["index"]["version"] == 1][-1]
    # Same embeddings under new ids: the same ranking with the new names.
    assert [n["id"][3:] for n in first_v2["neighbours"]] == [n["id"] for n in last_v1["neighbours"]]


def test_concurrency_is_bounded_with_503(catalog, tmp_path):
    svc = Service("--index", catalog["flat"], "--model", catalog["model"], "--workers", "1", "--queue", "0")
    big = np.random.default_rng(0).integers(0, 256, (60, 60, 3), np.uint8)  # under the model's 64 x 64 limit
    out = io.BytesIO()
    Image.fromarray(big).save(out, "PNG")
    body = out.getvalue()
    try:
        statuses = []
        for _ in range(5):  # bursts of 12 simultaneous requests until one finds the worker busy
            barrier = threading.Barrier(12)

            def one(barrier=barrier):
                barrier.wait()
                return svc.search(body, "?k=12&mode=rescore", "image/png")

            with concurrent.futures.ThreadPoolExecutor(12) as pool:
                results = list(pool.map(lambda _: one(), range(12)))
            statuses += [code for code, _ in results]
            busy = [a for code, a in results if code == 503]
            if busy and 200 in statuses:
                break
        assert set(statuses) <= {200, 503} and 200 in statuses and 503 in statuses, statuses
        assert "busy: 1 requests running and 0 queued" in busy[0]["error"]
        assert svc.request("/healthz")[0] == 200
    finally:
        assert svc.stop()[0] == 0
