"""Bad input gets its status code and an OpenAI-style error naming what was wrong; the server
keeps serving, and no KV block leaks."""

import base64
import json
import socket

import httpx
import openai
import pytest

from conftest import MODEL_NAME, InvarServer

C = "/v1/completions"
CHAT = "/v1/chat/completions"
USER = [{"role": "user", "content": "hi"}]


def body(**fields):
    return json.dumps({"model": MODEL_NAME, **fields}).encode()


def deep(levels, inner=b"1"):
    return b"[" * levels + inner + b"]" * levels


# (name, method, path, raw body, status, fragment of the message, param). Sent with
# Content-Type: application/json unless the case says otherwise (CONTENT_TYPES).
CASES = [
    # Malformed, truncated and non-JSON bodies.
    ("malformed json", "POST", C, b'{"prompt": "x",', 400, "not valid JSON", None),
    ("truncated in a string", "POST", C, b'{"prompt": "The capi', 400, "not valid JSON", None),
    ("truncated after a key", "POST", CHAT, b'{"messages"', 400, "not valid JSON", None),
    ("trailing garbage", "POST", C, b'{"prompt": "x"} {"prompt": "y"}', 400, "not valid JSON",
     None),
    ("single quotes", "POST", C, b"{'prompt': 'x'}", 400, "not valid JSON", None),
    ("comment", "POST", C, b'{"prompt": "x" /* hi */}', 400, "not valid JSON", None),
    ("NaN literal", "POST", C, b'{"prompt": "x", "temperature": NaN}', 400, "not valid JSON", None),
    ("Infinity literal", "POST", C, b'{"prompt": "x", "top_p": Infinity}', 400, "not valid JSON",
     None),
    ("number past double", "POST", C, b'{"prompt": "x", "temperature": 1e400}', 400,
     "not valid JSON", None),
    ("not an object", "POST", C, b'["x"]', 400, "JSON object", None),
    ("null body", "POST", C, b"null", 400, "JSON object", None),
    ("empty body", "POST", CHAT, b"", 400, "not valid JSON", None),
    ("nested a million levels", "POST", C,
     b'{"prompt": "x", "user": ' + deep(1_000_000) + b"}", 400, "levels deep", None),
    ("deep chat_template_kwargs", "POST", CHAT,
     b'{"messages": [{"role": "user", "content": "hi"}], "chat_template_kwargs": {"a": '
     + deep(200_000) + b"}}", 400, "levels deep", None),
    ("deep best_of and n", "POST", C,
     b'{"prompt": "x", "best_of": ' + deep(200_000) + b', "n": ' + deep(200_000) + b"}", 400,
     "levels deep", None),
    # Text that is not UTF-8, and lone surrogates.
    ("bad utf-8", "POST", C, b'{"prompt": "caf\xc3\x28"}', 400, "not valid UTF-8", None),
    ("overlong utf-8", "POST", C, b'{"prompt": "\xc0\xaf"}', 400, "not valid UTF-8", None),
    ("utf-8 encoded surrogate", "POST", C, b'{"prompt": "\xed\xa0\x80"}', 400,
     "not valid UTF-8", None),
    ("cut utf-8 at the end", "POST", C, b'{"prompt": "x"}\xf0\x9f\x98', 400, "not valid UTF-8",
     None),
    ("lone surrogate", "POST", C, b'{"prompt": "\\ud800"}', 400, "not valid JSON", None),
    ("lone low surrogate", "POST", CHAT,
     b'{"messages": [{"role": "user", "content": "\\udc00"}]}', 400, "not valid JSON", None),
    ("high surrogate then a letter", "POST", C, b'{"prompt": "\\ud800\\u0041"}', 400,
     "not valid JSON", None),
    # Wrong types.
    ("prompt wrong type", "POST", C, body(prompt=42), 400, "must be a string", "prompt"),
    ("prompt empty list", "POST", C, body(prompt=[]), 400, "must be a string", "prompt"),
    ("prompt list of lists of strings", "POST", C, body(prompt=[["a"]]), 400, "token ids",
     "prompt"),
    ("prompt ids mixed with text", "POST", C, body(prompt=[1, "a"]), 400, "token ids", "prompt"),
    ("model wrong type", "POST", C, body(model=5, prompt="x"), 400, "a string", "model"),
    ("temperature wrong type", "POST", C, body(prompt="x", temperature="hot"), 400, "a number",
     "temperature"),
    ("max_tokens wrong type", "POST", C, body(prompt="x", max_tokens="8"), 400, "an integer",
     "max_tokens"),
    ("max_tokens a fraction", "POST", C, body(prompt="x", max_tokens=8.5), 400, "an integer",
     "max_tokens"),
    ("top_k wrong type", "POST", C, body(prompt="x", top_k="5"), 400, "an integer", "top_k"),
    ("n a fraction", "POST", C, body(prompt="x", n=1.5), 400, "an integer", "n"),
    ("seed wrong type", "POST", C, body(prompt="x", seed="x"), 400, "an integer", "seed"),
    ("stop wrong type", "POST", C, body(prompt="x", stop=5), 400, "a string or a list", "stop"),
    ("stop list of numbers", "POST", C, body(prompt="x", stop=[1]), 400, "a string or a list",
     "stop"),
    ("stop_token_ids wrong type", "POST", C, body(prompt="x", stop_token_ids="2"), 400,
     "a list of integer token ids", "stop_token_ids"),
    ("stream wrong type", "POST", C, body(prompt="x", stream="yes"), 400, "a boolean", "stream"),
    ("stream_options wrong type", "POST", C, body(prompt="x", stream=True, stream_options=1), 400,
     "an object", "stream_options"),
    ("logprobs wrong type", "POST", C, body(prompt="x", logprobs="yes"), 400, "an integer",
     "logprobs"),
    ("chat logprobs wrong type", "POST", CHAT, body(messages=USER, logprobs=3), 400, "a boolean",
     "logprobs"),
    ("messages wrong type", "POST", CHAT, body(messages="hi"), 400, "non-empty list", "messages"),
    ("message not an object", "POST", CHAT, body(messages=[1]), 400, "an object", "messages[0]"),
    ("role wrong type", "POST", CHAT, body(messages=[{"role": 5, "content": "x"}]), 400,
     "one of", "messages[0].role"),
    ("content wrong type", "POST", CHAT, body(messages=[{"role": "user", "content": 3}]), 400,
     "a string", "messages[0].content"),
    ("content missing", "POST", CHAT, body(messages=[{"role": "user"}]), 400, "required",
     "messages[0].content"),
    ("chat_template_kwargs wrong type", "POST", CHAT, body(messages=USER, chat_template_kwargs=[]),
     400, "an object", "chat_template_kwargs"),
    # Huge, negative and absurd numbers.
    ("max_tokens 2**64", "POST", C, body(prompt="x", max_tokens=2**64), 400, "an integer",
     "max_tokens"),
    ("max_tokens 2**63", "POST", C, body(prompt="x", max_tokens=2**63), 400, "between 0",
     "max_tokens"),
    ("max_tokens 1e300", "POST", C, body(prompt="x", max_tokens=1e300), 400, "an integer",
     "max_tokens"),
    ("negative max_tokens", "POST", C, body(prompt="x", max_tokens=-1), 400, "between 0",
     "max_tokens"),
    ("zero max_tokens", "POST", CHAT, body(messages=USER, max_tokens=0), 400, "at least 1",
     "max_tokens"),
    ("max_tokens past the context", "POST", C, body(prompt="hi", max_tokens=100000), 400,
     "maximum context length", "max_tokens"),
    ("chat max_tokens past the context", "POST", CHAT, body(messages=USER, max_tokens=100000), 400,
     "maximum context length", "max_tokens"),
    ("negative temperature", "POST", C, body(prompt="x", temperature=-1), 400, ">= 0",
     "temperature"),
    ("huge temperature", "POST", C, body(prompt="x", temperature=1e9), 400, "<= 2", "temperature"),
    ("top_p zero", "POST", C, body(prompt="x", top_p=0), 400, "> 0", "top_p"),
    ("top_p above one", "POST", C, body(prompt="x", top_p=1.5), 400, "<= 1", "top_p"),
    ("top_k below -1", "POST", C, body(prompt="x", top_k=-2), 400, "between -1", "top_k"),
    ("top_k 2**31", "POST", C, body(prompt="x", top_k=2**31), 400, "between -1", "top_k"),
    ("min_p negative", "POST", C, body(prompt="x", min_p=-0.1), 400, ">= 0", "min_p"),
    ("repetition_penalty zero", "POST", C, body(prompt="x", repetition_penalty=0), 400, "> 0",
     "repetition_penalty"),
    ("presence_penalty huge", "POST", C, body(prompt="x", presence_penalty=1e308), 400, "<= 2",
     "presence_penalty"),
    ("seed 2**64", "POST", C, body(prompt="x", seed=2**64), 400, "an integer", "seed"),
    ("n zero", "POST", C, body(prompt="x", n=0), 400, "between 1", "n"),
    ("n negative", "POST", C, body(prompt="x", n=-1), 400, "between 1", "n"),
    ("n too big", "POST", C, body(prompt="x", n=1000), 400, "between 1", "n"),
    ("n times prompts too many", "POST", C, body(prompt=["a"] * 20), 400, "choices", "n"),
    ("logprobs negative", "POST", C, body(prompt="x", logprobs=-1), 400, "between 0 and 20",
     "logprobs"),
    ("logprobs too many", "POST", C, body(prompt="x", logprobs=50), 400, "between 0 and 20",
     "logprobs"),
    ("top_logprobs too many", "POST", CHAT, body(messages=USER, logprobs=True, top_logprobs=21),
     400, "between 0 and 20", "top_logprobs"),
    ("top_logprobs without logprobs", "POST", CHAT, body(messages=USER, top_logprobs=3), 400,
     "needs 'logprobs'", "top_logprobs"),
    ("suffix", "POST", C, body(prompt="x", suffix="y"), 400, "not supported", "suffix"),
    ("unknown field", "POST", C, body(prompt="x", frobnicate=1), 400, "unknown field",
     "frobnicate"),
    ("guided_choice not a list", "POST", CHAT, body(messages=USER, guided_choice="a"), 400,
     "must be a non-empty list", "guided_choice"),
    ("regex that does not compile", "POST", C, body(prompt="x", guided_regex="(a"), 400,
     "cannot be compiled", "guided_regex"),
    ("tool call without a function", "POST", CHAT,
     body(messages=[{"role": "assistant", "content": None, "tool_calls": [{"id": "1"}]}]), 400,
     "must be an object", "messages[0].tool_calls[0].function"),
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
    ("a thousand stop strings", "POST", C, body(prompt="x", stop=[f"s{i}" for i in range(1000)]),
     400, "at most 16", "stop"),
    ("stop token id outside vocabulary", "POST", C, body(prompt="x", stop_token_ids=[-1]), 400,
     "outside the vocabulary", "stop_token_ids"),
    # Prompts and messages the model cannot take.
    ("missing prompt", "POST", C, body(), 400, "required", "prompt"),
    ("empty prompt", "POST", C, body(prompt=""), 400, "empty", "prompt"),
    ("empty prompt in a list", "POST", C, body(prompt=["a", ""]), 400, "empty", "prompt"),
    ("missing messages", "POST", CHAT, body(), 400, "required", "messages"),
    ("empty messages", "POST", CHAT, body(messages=[]), 400, "non-empty", "messages"),
    ("unknown role", "POST", CHAT, body(messages=[{"role": "wizard", "content": "x"}]), 400,
     "not supported", "messages[0].role"),
    ("tool message without tool_call_id", "POST", CHAT,
     body(messages=[{"role": "tool", "content": "x"}]), 400, "tool_call_id",
     "messages[0].tool_call_id"),
    ("image part", "POST", CHAT,
     body(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]),
     400, "only text", "messages[0].content"),
    ("kwargs set messages", "POST", CHAT,
     body(messages=USER, chat_template_kwargs={"messages": []}), 400, "may not set",
     "chat_template_kwargs"),
    ("continue and generation prompt", "POST", CHAT,
     body(messages=USER, continue_final_message=True), 400, "add_generation_prompt",
     "continue_final_message"),
    ("token id outside vocabulary", "POST", C, body(prompt=[1, 10**9]), 400,
     "outside the vocabulary", "prompt"),
    ("negative token id", "POST", C, body(prompt=[-1]), 400, "outside the vocabulary", "prompt"),
    ("prompt longer than the context", "POST", C, body(prompt=[1] * 5000), 400,
     "maximum context length", "prompt"),
    ("long text prompt", "POST", C, body(prompt="hello " * 5000), 400, "maximum context length",
     "prompt"),
    ("chat longer than the context", "POST", CHAT,
     body(messages=[{"role": "user", "content": "hello " * 5000}]), 400, "maximum context length",
     "messages"),
    # Fields invar refuses rather than ignores.
    ("best_of", "POST", C, body(prompt="x", best_of=3), 400, "not supported", "best_of"),
    ("tool without a function", "POST", CHAT, body(messages=USER, tools=[{"type": "function"}]),
     400, "must be an object", "tools[0].function"),
    ("functions", "POST", CHAT, body(messages=USER, functions=[{"name": "f"}]), 400,
     "not supported", "functions"),
    ("stream_options without stream", "POST", C,
     body(prompt="x", stream_options={"include_usage": True}), 400, "needs 'stream'",
     "stream_options"),
    # Models, routes, methods, sizes and content types.
    ("unknown model", "POST", C, json.dumps({"model": "gpt-4", "prompt": "x"}).encode(), 404,
     "does not exist", "model"),
    ("unknown model route", "GET", "/v1/models/gpt-4", b"", 404, "does not exist", "model"),
    ("unknown route", "GET", "/v1/embeddings", b"", 404, "no route", None),
    ("unknown path", "POST", "/nowhere", b"{}", 404, "no route", None),
    ("path below a route", "POST", C + "/extra", b"{}", 404, "no route", None),
    ("wrong method on completions", "GET", C, b"", 405, "not allowed", None),
    ("wrong method on chat", "GET", CHAT, b"", 405, "not allowed", None),
    ("put on completions", "PUT", C, body(prompt="x"), 405, "not allowed", None),
    ("wrong method on models", "POST", "/v1/models", b"{}", 405, "not allowed", None),
    ("wrong method on health", "DELETE", "/health", b"", 405, "not allowed", None),
    ("post on metrics", "POST", "/metrics", b"{}", 405, "not allowed", None),
    ("oversized body", "POST", C, b'{"prompt": "' + b"a" * (5 << 20) + b'"}', 413, "larger than",
     None),
    ("10 MB prompt", "POST", C, body(prompt="The capital of France is " * 400_000), 413,
     "larger than", None),
    ("plain text body", "POST", C, body(prompt="x"), 415, "Content-Type", None),
    ("form body", "POST", CHAT, b"messages=hi", 415, "Content-Type", None),
    ("multipart body", "POST", C, b"--b\r\n\r\nx\r\n--b--\r\n", 415, "Content-Type", None),
]

CONTENT_TYPES = {
    "plain text body": "text/plain",
    "form body": "application/x-www-form-urlencoded",
    "multipart body": "multipart/form-data; boundary=b",
}


@pytest.mark.parametrize("name,method,path,raw,status,fragment,param", CASES,
                         ids=[c[0] for c in CASES])
def test_bad_input(server, name, method, path, raw, status, fragment, param):
    headers = {"Content-Type": CONTENT_TYPES.get(name, "application/json")}
    r = httpx.request(method, server.url + path, content=raw, headers=headers, timeout=60)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    error = r.json()["error"]
    assert fragment in error["message"]
    assert error["param"] == param
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["type"], str) and error["type"]
    if status == 404 and param == "model":
        assert error["code"] == "model_not_found"
    if status == 405:
        assert r.headers["allow"] in ("GET", "POST")
    if status == 415:
        assert error["code"] == "unsupported_media_type"


def test_openai_client_sees_errors(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=MODEL_NAME, prompt="x", temperature=-1)
    assert "temperature" in str(e.value)
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="no-such-model", prompt="x")


def raw_exchange(port, data):
    """Sends raw bytes, returns (status, headers, body) of the reply (read to the close)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(data)
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    head, _, rest = reply.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split(" ")[1]), headers, rest[: int(headers.get("Content-Length", 0))]


RAW_CASES = [
    ("garbage", b"\x00\x01garbage\r\n\r\n", 400, "malformed HTTP request"),
    ("bad content-length", b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n"
     b"Content-Length: abc\r\n\r\n", 400, "malformed HTTP request"),
    ("header too large", b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000
     + b"\r\n\r\n", 431, "headers are too large"),
    ("content-length over the limit", b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n"
     b"Content-Length: 100000000\r\n\r\n", 413, "larger than"),
    ("chunk over the limit", b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n5000000\r\n", 413, "larger than"),
]


@pytest.mark.parametrize("name,data,status,fragment", RAW_CASES, ids=[c[0] for c in RAW_CASES])
def test_bad_http(server, name, data, status, fragment):
    """Requests that are not valid HTTP (or too large to read): a status and an error body, then
    the connection is closed; the server carries on."""
    got, headers, body = raw_exchange(server.port, data)
    assert got == status
    assert headers["Connection"] == "close"
    error = json.loads(body)["error"]
    assert fragment in error["message"]
    assert set(error) == {"message", "type", "param", "code"}


AUTH_KEY = "matrix-key"
AUTH_CASES = [
    ("no Authorization", None),
    ("wrong key", "Bearer nope"),
    ("basic scheme", "Basic " + base64.b64encode(f"user:{AUTH_KEY}".encode()).decode()),
    ("bearer without a key", "Bearer"),  # "Bearer " too, but httpx will not send its space
    ("key without the scheme", AUTH_KEY),
    ("key with a suffix", f"Bearer {AUTH_KEY}x"),
    ("a prefix of the key", f"Bearer {AUTH_KEY[:-1]}"),
]


@pytest.fixture(scope="module")
def auth_server():
    s = InvarServer("--api-key", AUTH_KEY)
    yield s
    assert s.stop() == 0


@pytest.mark.parametrize("name,authorization", AUTH_CASES, ids=[c[0] for c in AUTH_CASES])
def test_bad_authorization(auth_server, name, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}
    for method, path in (("POST", C), ("POST", CHAT), ("GET", "/v1/models")):
        r = httpx.request(method, auth_server.url + path, headers=headers,
                          json={"prompt": "x", "messages": USER}, timeout=60)
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == "Bearer"
        error = r.json()["error"]
        assert error["code"] == "invalid_api_key" and "API key" in error["message"]
        assert set(error) == {"message", "type", "param", "code"}


def test_good_authorization_after_bad(auth_server):
    r = httpx.post(auth_server.url + C, headers={"Authorization": f"Bearer {AUTH_KEY}"},
                   json={"prompt": "Hi", "max_tokens": 1}, timeout=60)
    assert r.status_code == 200
    assert auth_server.metrics()["invar_http_responses_5xx_total"] == 0


def test_still_serving_and_no_leak_after_bad_input(server, client):
    """After the whole matrix (and some more abuse right before): /health, a real completion
    equal to the one before the abuse, no KV block held, no 5xx answered."""
    first = client.completions.create(model=MODEL_NAME, prompt="The capital of France is",
                                      max_tokens=4, temperature=0)
    for case in CASES[:15]:
        httpx.request(case[1], server.url + case[2], content=case[3], timeout=60)
    r = client.completions.create(model=MODEL_NAME, prompt="The capital of France is",
                                  max_tokens=4, temperature=0)
    assert r.usage.completion_tokens == 4
    assert r.choices[0].text == first.choices[0].text
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
              "add_special_tokens", "response_format", "tools", "tool_choice", "unknown_field"]
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
