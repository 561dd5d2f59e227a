"""Many streams at once on loopback, and clients that leave mid-stream."""

import asyncio
import json
import time

import httpx

from conftest import MODEL_NAME

CONNECTIONS = 1000
MAX_TOKENS = 4
DEADLINE_S = 600  # the whole burst on a 2-core CPU; a stall fails the test instead of hanging


async def one_stream(client, url, i):
    # Short prompts (about 6 tokens): the load under test is a thousand open streams, and the
    # prompts' rows were most of the server's time (at 14 tokens the burst took half as long
    # again). All the streams are still open at once, over 900 of them queued.
    payload = {"model": MODEL_NAME, "prompt": f"Request {i}:",
               "max_tokens": MAX_TOKENS, "temperature": 0, "ignore_eos": True, "stream": True}
    tokens, done, finish = 0, False, None
    async with client.stream("POST", url + "/v1/completions", json=payload) as r:
        assert r.status_code == 200, await r.aread()
        async for line in r.aiter_lines():
            if not line.startswith("data: "):
                continue
            data = line[len("data: "):]
            if data == "[DONE]":
                done = True
                continue
            chunk = json.loads(data)
            choice = chunk["choices"][0]
            if choice["text"]:
                tokens += 1
            finish = choice["finish_reason"] or finish
    return done, finish, tokens


async def burst(url):
    limits = httpx.Limits(max_connections=CONNECTIONS + 10, max_keepalive_connections=0)
    timeout = httpx.Timeout(DEADLINE_S, connect=60)
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
        tasks = [one_stream(client, url, i) for i in range(CONNECTIONS)]
        return await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), DEADLINE_S)


def test_thousand_concurrent_streams(server):
    start = time.monotonic()
    results = asyncio.run(burst(server.url))
    elapsed = time.monotonic() - start
    failures = [r for r in results if isinstance(r, BaseException)]
    assert not failures, f"{len(failures)} streams failed, first: {failures[0]!r}"
    assert all(done for done, _, _ in results), "a stream ended without [DONE]"
    assert all(finish == "length" for _, finish, _ in results)
    assert all(0 < tokens <= MAX_TOKENS for _, _, tokens in results)
    print(f"{CONNECTIONS} streams in {elapsed:.1f} s")
    m = server.wait_idle()
    assert m["invar_kv_blocks_used"] == 0
    assert m["invar_http_responses_5xx_total"] == 0


def test_disconnect_mid_stream_frees_blocks(server):
    before = server.metrics()["invar_requests_cancelled_disconnect_total"]
    payload = {"model": MODEL_NAME, "prompt": "Write a very long story.", "max_tokens": 3000,
               "ignore_eos": True, "stream": True}
    with httpx.Client(timeout=60) as client:
        with client.stream("POST", server.url + "/v1/completions", json=payload) as r:
            assert r.status_code == 200
            # Not `for ... break`: closing the line generator would close the connection here.
            lines = r.iter_lines()
            seen = 0
            while seen < 3:
                seen += next(lines).startswith("data: ")
            running = server.metrics()
            assert running["invar_kv_blocks_used"] > 0  # it holds blocks while streaming
        # leaving the `with` closes the connection mid-stream
    m = server.wait_idle(timeout=15)
    assert m["invar_kv_blocks_used"] == 0
    assert m["invar_num_requests_running"] == 0
    assert m["invar_requests_cancelled_disconnect_total"] == before + 1
    assert m["invar_engine_requests_in_flight"] == 0


def test_disconnect_while_waiting_for_whole_response(server):
    """A non-streaming client that gives up is noticed too (nothing is written until the end)."""
    before = server.metrics()["invar_requests_cancelled_disconnect_total"]
    payload = {"model": MODEL_NAME, "prompt": "Tell me everything.", "max_tokens": 3000,
               "ignore_eos": True}
    try:
        httpx.post(server.url + "/v1/completions", json=payload, timeout=1.0)
    except httpx.TimeoutException:
        pass
    m = server.wait_idle(timeout=15)
    assert m["invar_kv_blocks_used"] == 0
    assert m["invar_requests_cancelled_disconnect_total"] == before + 1
