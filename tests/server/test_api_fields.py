"""The request fields of issue 13 through the real openai client (extra_body for vLLM's): each
implemented one does what vLLM does, each refused one and each unknown one is a 400 naming
it; /tokenize and /detokenize; CORS; the metrics under vLLM's names."""

import json
import struct

import httpx
import openai
import pytest

from conftest import MODEL_NAME, InvarServer

PROMPT = "The capital of France is"
CAPITAL = [{"role": "user", "content": "What is the capital of France?"}]


def bits(x):
    return struct.pack("<d", x)


def post(server, path, body):
    return httpx.post(server.url + path, json=body, timeout=120)


@pytest.mark.parametrize("path,field,value,fragment", [
    ("/v1/completions", "temprature", 0.5, "unknown field"),
    ("/v1/completions", "top_logprobs", 2, "unknown field"),  # a chat field
    ("/v1/chat/completions", "prompt", "x", "unknown field"),
    ("/v1/completions", "suffix", "y", "fill-in-the-middle"),
    ("/v1/completions", "structured_outputs", {"regex": "a+"}, "guided_regex"),
    ("/v1/completions", "guided_whitespace_pattern", " ", "compact JSON"),
    ("/v1/completions", "guided_decoding_backend", "outlines", "XGrammar"),
    ("/v1/chat/completions", "response_format", {"type": "json_schema", "json_schema": {}},
     "json_schema"),
    ("/v1/chat/completions", "functions", [{"name": "f"}], "use those"),
    ("/v1/chat/completions", "tool_choice", "required", "no 'tools'"),
    ("/v1/completions", "use_beam_search", True, "beam search"),
    ("/v1/completions", "allowed_token_ids", [1, 2], "not supported"),
    ("/v1/completions", "truncate_prompt_tokens", 5, "truncate"),
    ("/v1/chat/completions", "chat_template", "{{ x }}", "--chat-template"),
    ("/v1/completions", "priority", 3, "first come"),
])
def test_refused_and_unknown_fields_are_400_naming_them(server, path, field, value, fragment):
    body = {"model": MODEL_NAME, "max_tokens": 1, field: value}
    body.update({"prompt": "Hi"} if path.endswith("/completions") and "chat" not in path
                else {"messages": CAPITAL})
    if field == "prompt":
        body["prompt"] = value
    r = post(server, path, body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == field
    assert fragment in error["message"]


def test_the_openai_client_raises_with_the_field_name(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=MODEL_NAME, prompt="Hi", max_tokens=1,
                                  extra_body={"cache_salt": "a"})
    assert "cache_salt" in str(e.value)


def test_fields_ignored_by_design_and_defaults_are_accepted(client):
    r = client.chat.completions.create(
        model=MODEL_NAME, messages=CAPITAL, max_tokens=2, temperature=0, user="someone",
        metadata={"run": "7"}, parallel_tool_calls=False, tool_choice="none",
        response_format={"type": "text"}, store=False,
        extra_body={"spaces_between_special_tokens": False, "use_beam_search": False})
    assert r.usage.completion_tokens == 2


def test_echo(client):
    plain = client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=4, temperature=0,
                                      logprobs=1)
    r = client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=4, temperature=0,
                                  logprobs=1, echo=True)
    c = r.choices[0]
    assert c.text == PROMPT + plain.choices[0].text
    lp = c.logprobs
    n = r.usage.prompt_tokens
    assert len(lp.tokens) == n + 4
    assert "".join(lp.tokens) == c.text
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    assert all(x <= 0 for x in lp.token_logprobs[1:])
    assert lp.token_logprobs[n:] == plain.choices[0].logprobs.token_logprobs
    assert lp.text_offset[:2] == [0, len(lp.tokens[0])]
    # Streamed: the same text and logprobs, the prompt in the first chunk.
    chunks = [ch for ch in client.completions.create(
        model=MODEL_NAME, prompt=PROMPT, max_tokens=4, temperature=0, logprobs=1, echo=True,
        stream=True) if ch.choices]
    assert chunks[0].choices[0].text.startswith(PROMPT)
    assert "".join(ch.choices[0].text for ch in chunks) == c.text
    streamed = [x for ch in chunks if ch.choices[0].logprobs
                for x in ch.choices[0].logprobs.token_logprobs]
    assert streamed == lp.token_logprobs
    # max_tokens 0: the prompt alone, scored.
    zero = client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=0, echo=True,
                                     logprobs=0)
    assert zero.choices[0].text == PROMPT and zero.usage.completion_tokens == 0
    assert zero.choices[0].logprobs.token_logprobs == lp.token_logprobs[:n]
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=0)


def test_chat_prompt_logprobs_and_token_ids(client):
    r = client.chat.completions.create(
        model=MODEL_NAME, messages=CAPITAL, max_tokens=3, temperature=0,
        extra_body={"prompt_logprobs": 1, "return_token_ids": True})
    extra = r.model_extra
    ids = extra["prompt_token_ids"]
    assert len(ids) == r.usage.prompt_tokens
    assert len(extra["prompt_logprobs"]) == len(ids) and extra["prompt_logprobs"][0] is None
    for token, position in zip(ids[1:], extra["prompt_logprobs"][1:]):
        entry = position[str(token)]
        assert entry["logprob"] <= 0 and entry["rank"] >= 1
        assert len(position) <= 2
    assert len(r.choices[0].model_extra["token_ids"]) == 3
    tok = post_tokenize(client, {"messages": CAPITAL})
    assert tok["tokens"] == ids and tok["count"] == len(ids)


def post_tokenize(client, body, path="/tokenize"):
    r = httpx.post(str(client.base_url).replace("/v1/", "") + path, json=body, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def test_tokenize_and_detokenize(client):
    r = client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=1,
                                  extra_body={"return_token_ids": True})
    ids = r.choices[0].model_extra["prompt_token_ids"]
    t = post_tokenize(client, {"model": MODEL_NAME, "prompt": PROMPT, "return_token_strs": True})
    assert t["tokens"] == ids and t["count"] == len(ids) and t["max_model_len"] == 4096
    assert t["token_strs"][1] == "Ġcapital"
    assert post_tokenize(client, {"tokens": ids}, "/detokenize") == {"prompt": PROMPT}
    base = str(client.base_url).replace("/v1/", "")
    bad = httpx.post(base + "/detokenize", json={"tokens": [10**9]}).json()["error"]
    assert bad["param"] == "tokens"
    bad = httpx.post(base + "/tokenize", json={"prompt": "x", "tools": [{}]}).json()["error"]
    assert bad["param"] == "tools"
    assert httpx.get(base + "/tokenize").status_code == 405


def test_min_tokens(client):
    free = client.chat.completions.create(model=MODEL_NAME, messages=CAPITAL, max_tokens=30,
                                          temperature=0)
    assert free.choices[0].finish_reason == "stop"
    n = free.usage.completion_tokens  # the <|im_end|> included
    r = client.chat.completions.create(model=MODEL_NAME, messages=CAPITAL, max_tokens=30,
                                       temperature=0, extra_body={"min_tokens": n + 4})
    assert r.usage.completion_tokens >= n + 4
    assert r.choices[0].message.content.startswith(free.choices[0].message.content)


def test_logit_bias_changes_the_draw_not_the_logprob(client):
    plain = client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=1,
                                      temperature=0, logprobs=2,
                                      extra_body={"return_token_ids": True})
    best = plain.choices[0].model_extra["token_ids"][0]
    top = plain.choices[0].logprobs.top_logprobs[0]
    runner_up_text, runner_up_logprob = sorted(top.items(), key=lambda kv: -kv[1])[1]
    r = client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=1, temperature=0,
                                  logprobs=2, logit_bias={str(best): -100})
    assert r.choices[0].text == runner_up_text
    # The raw logprob (before the bias), as vLLM reports by default.
    assert bits(r.choices[0].logprobs.token_logprobs[0]) == bits(runner_up_logprob)
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=1,
                                  logit_bias={"5": 300})
    assert "logit_bias" in str(e.value)


def test_stop_string_and_stop_token_in_the_output(client):
    cut = client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=8, temperature=0,
                                    stop="Paris")
    kept = client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=8, temperature=0,
                                     stop="Paris", extra_body={"include_stop_str_in_output": True})
    assert kept.choices[0].text == cut.choices[0].text + "Paris"
    chat = client.chat.completions.create(
        model=MODEL_NAME, messages=CAPITAL, max_tokens=30, temperature=0, logprobs=True,
        extra_body={"include_stop_str_in_output": True, "skip_special_tokens": False})
    assert chat.choices[0].message.content == "The capital of France is Paris.<|im_end|>"
    # skip_special_tokens defaults to true: the control token leaves no text even when kept.
    skipped = client.chat.completions.create(
        model=MODEL_NAME, messages=CAPITAL, max_tokens=30, temperature=0,
        extra_body={"include_stop_str_in_output": True})
    assert skipped.choices[0].message.content == "The capital of France is Paris."
    # The stop token is reported with its logprob, as vLLM does, and counted in the usage.
    content = chat.choices[0].logprobs.content
    assert content[-1].token == "<|im_end|>"
    assert len(content) == chat.usage.completion_tokens


def test_tokens_as_token_ids(client):
    r = client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=2, temperature=0,
                                  logprobs=1, extra_body={"return_tokens_as_token_ids": True,
                                                          "return_token_ids": True})
    lp = r.choices[0].logprobs
    assert lp.tokens == [f"token_id:{i}" for i in r.choices[0].model_extra["token_ids"]]
    assert all(k.startswith("token_id:") for t in lp.top_logprobs for k in t)


def test_stream_usage(client):
    chunks = list(client.chat.completions.create(
        model=MODEL_NAME, messages=CAPITAL, max_tokens=5, temperature=0, stream=True,
        stream_options={"include_usage": True}))
    assert all(ch.usage is None for ch in chunks[:-1])
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 5
    no_usage = list(client.chat.completions.create(
        model=MODEL_NAME, messages=CAPITAL, max_tokens=5, temperature=0, stream=True))
    assert all(ch.usage is None for ch in no_usage)


def test_vllm_metric_names(server, client):
    client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=2)
    text = httpx.get(server.url + "/metrics").text
    for name in ("vllm:num_requests_running", "vllm:num_requests_waiting",
                 "vllm:prompt_tokens_total", "vllm:generation_tokens_total",
                 "vllm:kv_cache_usage_perc", "vllm:num_preemptions_total",
                 "vllm:e2e_request_latency_seconds_bucket",
                 "vllm:request_queue_time_seconds_count", "vllm:time_to_first_token_seconds_sum",
                 "vllm:inter_token_latency_seconds_bucket"):
        assert f"\n{name}{{model_name=\"{MODEL_NAME}\"" in text, name
    assert "# TYPE vllm:e2e_request_latency_seconds histogram" in text
    m = server.metrics()
    assert m["vllm:generation_tokens_total"] >= 2 and m["vllm:prompt_tokens_total"] >= 5
    assert f'vllm:request_success_total{{model_name="{MODEL_NAME}",finished_reason="length"}}' in text


def test_cors():
    origin = "https://app.example"
    s = InvarServer("--allowed-origins", origin)
    try:
        pre = httpx.options(s.url + "/v1/chat/completions", headers={
            "Origin": origin, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type"})
        assert pre.status_code == 204
        assert pre.headers["access-control-allow-origin"] == origin
        assert "POST" in pre.headers["access-control-allow-methods"]
        assert pre.headers["access-control-allow-headers"] == "authorization, content-type"
        r = httpx.post(s.url + "/v1/completions", headers={"Origin": origin},
                       json={"prompt": "Hi", "max_tokens": 1})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == origin
        streamed = httpx.post(s.url + "/v1/completions", headers={"Origin": origin},
                              json={"prompt": "Hi", "max_tokens": 1, "stream": True})
        assert streamed.headers["access-control-allow-origin"] == origin
        other = httpx.get(s.url + "/v1/models", headers={"Origin": "https://elsewhere.example"})
        assert "access-control-allow-origin" not in other.headers
    finally:
        assert s.stop() == 0


def test_no_cors_by_default(server):
    r = httpx.get(server.url + "/v1/models", headers={"Origin": "https://app.example"})
    assert "access-control-allow-origin" not in r.headers
    pre = httpx.options(server.url + "/v1/models", headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "GET"})
    assert pre.status_code == 405
