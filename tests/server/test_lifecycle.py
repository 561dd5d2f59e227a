"""API key, a full queue (429) and graceful shutdown on SIGTERM, on a server of its own."""

import json
import signal
import threading
import time

import httpx
import openai
import pytest

from conftest import MODEL_NAME, InvarServer

KEY = "sekrit-key"


@pytest.fixture(scope="module")
def small_server():
    s = InvarServer("--api-key", KEY, "--max-running", "1", "--max-queue", "1",
                    "--shutdown-timeout", "60")
    yield s
    s.stop()


def auth(key=KEY):
    return {"Authorization": f"Bearer {key}"}


def test_api_key(small_server):
    url = small_server.url
    payload = {"model": MODEL_NAME, "prompt": "Hi", "max_tokens": 1}
    for headers in ({}, auth("wrong"), {"Authorization": KEY}):
        r = httpx.post(url + "/v1/completions", json=payload, headers=headers)
        assert r.status_code == 401
        assert r.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(url + "/v1/models").status_code == 401
    assert httpx.post(url + "/v1/completions", json=payload, headers=auth()).status_code == 200
    # Health and metrics stay open, as in vLLM.
    assert httpx.get(url + "/health").status_code == 200
    assert httpx.get(url + "/metrics").status_code == 200
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=url + "/v1", api_key="wrong", max_retries=0).models.list()
    good = openai.OpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0)
    assert good.models.list().data[0].id == MODEL_NAME


def test_queue_full_is_429(small_server):
    payload = {"model": MODEL_NAME, "prompt": "Count to a thousand:", "max_tokens": 400,
               "ignore_eos": True, "stream": True}
    statuses, bodies = [], []
    with httpx.Client(timeout=60, headers=auth()) as client:
        streams = []
        for _ in range(4):
            cm = client.stream("POST", small_server.url + "/v1/completions", json=payload)
            r = cm.__enter__()
            streams.append(cm)
            statuses.append(r.status_code)
            if r.status_code != 200:
                bodies.append(json.loads(r.read()))
        for cm in streams:  # leaving closes the connections: the running ones are cancelled
            cm.__exit__(None, None, None)
    assert statuses[0] == 200
    assert 429 in statuses
    assert all(s in (200, 429) for s in statuses)
    error = bodies[0]["error"]
    assert error["code"] == "queue_full" and "retry" in error["message"]
    m = small_server.wait_idle()
    assert m["invar_kv_blocks_used"] == 0
    assert m["invar_requests_rejected_queue_full_total"] >= 1


def test_sigterm_finishes_in_flight_then_exits_zero(small_server):
    payload = {"model": MODEL_NAME, "prompt": "Tell a story:", "max_tokens": 40,
               "ignore_eos": True, "stream": True}
    result = {}

    def stream():
        chunks, done, finish = 0, False, None
        with httpx.stream("POST", small_server.url + "/v1/completions", json=payload,
                          headers=auth(), timeout=120) as r:
            for line in r.iter_lines():
                if line == "data: [DONE]":
                    done = True
                elif line.startswith("data: "):
                    chunks += 1
                    finish = json.loads(line[6:])["choices"][0]["finish_reason"] or finish
                    if chunks == 2:
                        result["streaming"] = True
        result.update(chunks=chunks, done=done, finish=finish)

    t = threading.Thread(target=stream)
    t.start()
    deadline = time.monotonic() + 60
    while "streaming" not in result and time.monotonic() < deadline:
        time.sleep(0.05)
    assert result.get("streaming")
    small_server.proc.send_signal(signal.SIGTERM)
    t.join(timeout=120)
    assert not t.is_alive()
    assert result["done"] and result["finish"] == "length"  # the request in flight finished
    assert small_server.proc.wait(timeout=60) == 0
    assert any("shutting down" in line for line in small_server.log)
    with pytest.raises(httpx.TransportError):
        httpx.get(small_server.url + "/health", timeout=5)
