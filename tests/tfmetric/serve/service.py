"""Starts ``python -m tfmetric.serve`` in a subprocess on a free loopback port and talks HTTP to it."""

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

from tests.fixtures import REPO_ROOT

READY = " at http://"


class Service:
    """A running service; ``url`` ends with "/". Stop it with ``stop(signal)``."""

    def __init__(self, *args, timeout=180):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO_ROOT)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tfmetric.serve", "--host", "127.0.0.1", "--port", "0", *args],
            cwd=REPO_ROOT,
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.lines = queue.Queue()
        self.stdout = []
        threading.Thread(target=self._read, daemon=True).start()
        deadline = time.monotonic() + timeout
        self.url = None
        while self.url is None:
            try:
                line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                line = None
            if line is None or time.monotonic() > deadline:
                self.proc.kill()
                printed = "".join(self.stdout) + self.proc.stderr.read()[-3000:]
                raise AssertionError(f"the service did not start: {printed}")
            if READY in line:
                self.url = line[line.index(READY) + 4 :].strip()

    def _read(self):
        for line in self.proc.stdout:
            self.stdout.append(line)
            self.lines.put(line)
        self.lines.put(None)

    def request(self, path, body=None, content_type=None, method=None, timeout=60):
        """(status, parsed JSON or raw bytes, headers) of one request."""
        headers = {"Content-Type": content_type} if content_type else {}
        req = urllib.request.Request(self.url + path.lstrip("/"), data=body, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as response:
                status, data, headers = response.status, response.read(), response.headers
        except urllib.error.HTTPError as e:
            status, data, headers = e.code, e.read(), e.headers
        if headers.get("Content-Type", "").startswith("application/json"):
            data = json.loads(data)
        return status, data, headers

    def search(self, image, query="", content_type="image/jpeg"):
        return self.request(f"/v1/search{query}", image, content_type)[:2]

    def stop(self, sig=signal.SIGTERM, timeout=60):
        """Sends ``sig``; returns (exit status, everything it printed on stdout)."""
        self.proc.send_signal(sig)
        self.proc.wait(timeout=timeout)
        time.sleep(0.2)  # the reader thread drains stdout
        return self.proc.returncode, "".join(self.stdout)
