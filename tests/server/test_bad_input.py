"""Bad input gets its status code and an OpenAI-style error naming what was wrong; the server
keeps serving, and no KV block leaks."""

import json

import httpx
import openai
import pytest

from conftest import MODEL_NAME

C = "/v1/completions"
CHAT = "/v1/chat/completions"
USER = [{"role": "user", "content": "hi"}]


def body(**fields):
    return json.dumps({"model": MODEL_NAME, **fields}).encode()


# (name, method, path, raw body, status, fragment of the message, param)
CASES = [
    ("malformed json", "POST", C, b'{"prompt": "x",', 400, "not valid JSON", None),
    ("not an object", "POST", C, b'["x"]', 400, "JSON object", None),
    ("empty body", "POST", CHAT, b"", 400, "not valid JSON", None),
    ("bad utf-8", "POST", C, b'{"prompt": "caf\xc3\x28"}', 400, "not valid UTF-8", None),
    ("lone surrogate", "POST", C, b'{"prompt": "\\ud800"}', 400, "not valid JSON", None),
    ("prompt wrong type", "POST", C, body(prompt=42), 400, "must be a string", "prompt"),
    ("temperature wrong type", "POST", C, body(prompt="x", temperature="hot"), 400, "a number",
     "temperature"),
    ("max_tokens wrong type", "POST", C, body(prompt="x", max_tokens="8"), 400, "an integer",
     "max_tokens"),
    ("stream wrong type", "POST", C, body(prompt="x", stream="yes"), 400, "a boolean", "stream"),
    ("messages wrong type", "POST", CHAT, body(messages="hi"), 400, "non-empty list", "messages"),
    ("content wrong type", "POST", CHAT, body(messages=[{"role": "user", "content": 3}]), 400,
     "a string", "messages[0].content"),
    ("unknown role", "POST", CHAT, body(messages=[{"role": "wizard", "content": "x"}]), 400,
     "not supported", "messages[0].role"),
    ("image part", "POST", CHAT,
     body(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]),
     400, "only text", "messages[0].content"),
    ("unknown model", "POST", C, json.dumps({"model": "gpt-4", "prompt": "x"}).encode(), 404,
     "does not exist", "model"),
    ("missing prompt", "POST", C, body(), 400, "required", "prompt"),
    ("empty prompt", "POST", C, body(prompt=""), 400, "empty", "prompt"),
    ("empty messages", "POST", CHAT, body(messages=[]), 400, "non-empty", "messages"),
    ("token id outside vocabulary", "POST", C, body(prompt=[1, 10**9]), 400, "outside the vocabulary",
     "prompt"),
    ("prompt longer than the context", "POST", C, body(prompt=[1] * 5000), 400,
     "maximum context length", "prompt"),
    ("long text prompt", "POST", C, body(prompt="hello " * 5000), 400, "maximum context length",
     "prompt"),
    ("max_tokens past the context", "POST", C, body(prompt="hi", max_tokens=100000), 400,
     "maximum context length", "max_tokens"),
    ("chat max_tokens past the context", "POST", CHAT, body(messages=USER, max_tokens=100000), 400,
     "maximum context length", "max_tokens"),
    ("negative max_tokens", "POST", C, body(prompt="x", max_tokens=-1), 400, "between 0",
     "max_tokens"),
    ("negative temperature", "POST", C, body(prompt="x", temperature=-1), 400, ">= 0", "temperature"),
    ("huge temperature", "POST", C, body(prompt="x", temperature=1e9), 400, "<= 2", "temperature"),
    ("top_p zero", "POST", C, body(prompt="x", top_p=0), 400, "> 0", "top_p"),
    ("top_p above one", "POST", C, body(prompt="x", top_p=1.5), 400, "<= 1", "top_p"),
    ("n zero", "POST", C, body(prompt="x", n=0), 400, "between 1", "n"),
    ("n too big", "POST", C, body(prompt="x", n=1000), 400, "between 1", "n"),
    ("logprobs too many", "POST", C, body(prompt="x", logprobs=50), 400, "between 0 and 20", "logprobs"),
    ("top_logprobs without logprobs", "POST", CHAT, body(messages=USER, top_logprobs=3), 400,
     "needs 'logprobs'", "top_logprobs"),
    ("suffix", "POST", C, body(prompt="x", suffix="y"), 400, "not supported", "suffix"),
    ("unknown field", "POST", C, body(prompt="x", frobnicate=1), 400, "unknown field",
     "frobnicate"),
    ("guided_choice not a list", "POST", CHAT, body(messages=USER, guided_choice="a"), 400,
     "must be a non-empty list", "guided_choice"),
    ("regex that does not compile", "POST", C, body(prompt="x", guided_regex="(a"), 400,
     "cannot be compiled", "guided_regex"),
    ("tool call message", "POST", CHAT,
     body(messages=[{"role": "assistant", "content": None, "tool_calls": [{"id": "1"}]}]), 400,
     "not supported", "messages[0].tool_calls"),
    ("logit_bias key", "POST", C, body(prompt="x", logit_bias={"x": 1}), 400, "not a token id",
     "logit_bias"),
    ("logit_bias value", "POST", C, body(prompt="x", logit_bias={"5": -1000}), 400, "[-100, 100]",
     "logit_bias"),
    ("min_tokens over max_tokens", "POST", C, body(prompt="x", max_tokens=2, min_tokens=3), 400,
     "at most max_tokens", "min_tokens"),
    ("prompt_logprobs streamed", "POST", C, body(prompt="x", stream=True, prompt_logprobs=1), 400,
     "stream", "prompt_logprobs"),
    ("max_tokens 0 without scoring", "POST", C, body(prompt="x", max_tokens=0), 400,
     "0 with echo or prompt_logprobs", "max_tokens"),
    ("detokenize outside vocabulary", "POST", "/detokenize", json.dumps({"tokens": [-1]}).encode(),
     400, "outside the vocabulary", "tokens"),
    ("tokenize both", "POST", "/tokenize", json.dumps({"prompt": "x", "messages": USER}).encode(),
     400, "not both", "prompt"),
    ("unknown route", "GET", "/v1/embeddings", b"", 404, "no route", None),
    ("unknown path", "POST", "/nowhere", b"{}", 404, "no route", None),
    ("wrong method on completions", "GET", C, b"", 405, "not allowed", None),
    ("wrong method on models", "POST", "/v1/models", b"{}", 405, "not allowed", None),
    ("wrong method on health", "DELETE", "/health", b"", 405, "not allowed", None),
    ("oversized body", "POST", C, b'{"prompt": "' + b"a" * (5 << 20) + b'"}', 413, "larger than", None),
]


@pytest.mark.parametrize("name,method,path,raw,status,fragment,param", CASES,
                         ids=[c[0] for c in CASES])
def test_bad_input(server, name, method, path, raw, status, fragment, param):
    r = httpx.request(method, server.url + path, content=raw,
                      headers={"Content-Type": "application/json"}, timeout=60)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert fragment in error["message"]
    assert error["param"] == param
    assert set(error) == {"message", "type", "param", "code"}
    if status == 404 and param == "model":
        assert error["code"] == "model_not_found"


def test_openai_client_sees_errors(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=MODEL_NAME, prompt="x", temperature=-1)
    assert "temperature" in str(e.value)
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="no-such-model", prompt="x")


def test_garbage_http(server):
    """Raw non-HTTP bytes get a 400 and the server carries on."""
    import socket
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"\x00\x01garbage\r\n\r\n")
        reply = s.recv(4096)
    assert reply.startswith(b"HTTP/1.1 400")


def test_still_serving_and_no_leak_after_bad_input(server, client):
    for case in CASES[:5]:  # some more abuse right before
        httpx.request(case[1], server.url + case[2], content=case[3], timeout=60)
    r = client.completions.create(model=MODEL_NAME, prompt="The capital of France is",
                                  max_tokens=4, temperature=0)
    assert r.usage.completion_tokens == 4
    m = server.wait_idle()
    assert m["invar_kv_blocks_used"] == 0
    assert m["invar_num_requests_running"] == 0
    assert m["invar_http_responses_5xx_total"] == 0
    assert httpx.get(server.url + "/health").json() == {"status": "ok"}


def test_random_bodies_never_crash(server):
    """Seeded random mutations of valid requests: every answer is a 200 or a 4xx error body."""
    import random
    rng = random.Random(20261125)
    values = [None, True, False, 0, -1, 1, 2**63, -2**63, 2**64, 1e308, -1e-300, 0.5, "", "x",
              "\u00e9\u4e2d", [], [1], [[]], [[1, 2]], ["a", 3], {}, {"type": "text"}, {"5": 3},
              {"5": "x"}, {"include_usage": True},
              [{"role": "user"}], [{"role": "user", "content": None}], "\n" * 50]
    fields = ["model", "prompt", "messages", "max_tokens", "max_completion_tokens", "temperature",
              "top_p", "top_k", "min_p", "n", "seed", "stop", "stop_token_ids", "logprobs",
              "top_logprobs", "presence_penalty", "frequency_penalty", "repetition_penalty",
              "stream", "stream_options", "ignore_eos", "echo", "best_of", "user", "min_tokens",
              "logit_bias", "prompt_logprobs", "include_stop_str_in_output",
              "skip_special_tokens", "return_token_ids", "return_tokens_as_token_ids",
              "add_special_tokens", "response_format", "tools", "unknown_field"]
    with httpx.Client(timeout=120) as c:
        for i in range(300):
            path = rng.choice([C, CHAT])
            req = ({"prompt": "Hi", "max_tokens": 2} if path == C else
                   {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2})
            for _ in range(rng.randint(1, 4)):
                req[rng.choice(fields)] = rng.choice(values)
            if isinstance(req.get("max_tokens"), int) and req["max_tokens"] > 4:
                req["max_tokens"] = 4  # keep valid generations short
            req.pop("max_completion_tokens", None) if rng.random() < 0.5 else None
            if req.get("n") not in (None, 1) and isinstance(req.get("n"), int) and req["n"] > 2:
                req["n"] = 2
            r = c.post(server.url + path, content=json.dumps(req).encode())
            assert r.status_code in (200, 400, 404), (req, r.status_code, r.text)
            if r.status_code != 200:
                assert set(r.json()["error"]) == {"message", "type", "param", "code"}
            elif req.get("stream") is not True:
                assert r.json()["choices"]
    m = server.wait_idle()
    assert m["invar_kv_blocks_used"] == 0
    assert m["invar_http_responses_5xx_total"] == 0
