"""Starts `invar serve` on a free loopback port for the end-to-end tests.

INVAR_BIN is the invar binary and INVAR_MODEL the model (tests/server/run.sh sets both).
INVAR_SERVE_ARGS, if set, is added to every server's command line: e.g. "--device cuda" to run
a test against the GPU backend (scripts/gpu-model-check's scoring step).
Every server is started with --port 0 and the port is read from its "listening on" line; it is
stopped with SIGTERM at the end (killed if it does not exit), so nothing outlives the tests.
"""

import os
import queue
import re
import resource
import signal
import subprocess
import threading
import time

import httpx
import openai
import pytest

MODEL_NAME = "smol"


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class InvarServer:
    def __init__(self, *extra_args, start_timeout=120, model=None):
        raise_fd_limit()
        cmd = [os.environ["INVAR_BIN"], "serve", "--model", model or os.environ["INVAR_MODEL"],
               "--host", "127.0.0.1", "--port", "0", "--served-model-name", MODEL_NAME,
               *os.environ.get("INVAR_SERVE_ARGS", "").split(), *extra_args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True, errors="replace")
        self.log = []
        lines = queue.Queue()

        def drain():  # keeps the pipe from filling and blocking the server
            for line in self.proc.stderr:
                self.log.append(line)
                lines.put(line)
        threading.Thread(target=drain, daemon=True).start()

        deadline = time.monotonic() + start_timeout
        self.port = None
        while self.port is None:
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                self.kill()
                raise RuntimeError("invar serve did not start:\n" + "".join(self.log))
            try:
                line = lines.get(timeout=min(left, 1.0))
            except queue.Empty:
                continue
            m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
            if m:
                self.port = int(m.group(1))
        self.url = f"http://127.0.0.1:{self.port}"

    def metrics(self):
        text = httpx.get(self.url + "/metrics", timeout=10).text
        values = {}
        for line in text.splitlines():
            if line.startswith("#") or not line:
                continue
            name, value = line.rsplit(" ", 1)
            values[name.split("{")[0]] = float(value)
        return values

    def wait_idle(self, timeout=15):
        """Polls /metrics until no KV block is used and nothing runs; returns the metrics."""
        deadline = time.monotonic() + timeout
        while True:
            m = self.metrics()
            if m["invar_kv_blocks_used"] == 0 and m["invar_num_requests_running"] == 0:
                return m
            if time.monotonic() > deadline:
                return m
            time.sleep(0.1)

    def stop(self, timeout=60):
        """SIGTERM, then the exit status (None if it had to be killed)."""
        if self.proc.poll() is not None and self.proc.returncode != 0:
            print("invar serve died early; its log:\n" + "".join(self.log))
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                return None
        return self.proc.returncode

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="session")
def server():
    s = InvarServer("--max-queue", "2000")
    yield s
    s.stop()


@pytest.fixture(scope="session")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0,
                         timeout=120)
