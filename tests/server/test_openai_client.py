"""The real openai client against `invar serve` with SmolLM2: completions, chat, streaming,
logprobs, seeds, stop strings, n, usage."""

import math

from conftest import MODEL_NAME

PROMPT = "The capital of France is"


def test_models(client):
    models = client.models.list()
    assert [m.id for m in models.data] == [MODEL_NAME]
    assert client.models.retrieve(MODEL_NAME).id == MODEL_NAME


def test_completion_greedy(client):
    r = client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=8, temperature=0)
    assert r.object == "text_completion"
    assert r.model == MODEL_NAME
    assert r.system_fingerprint and r.system_fingerprint.startswith("inv-")
    assert len(r.choices) == 1
    c = r.choices[0]
    assert "Paris" in c.text
    assert c.finish_reason == "length"
    assert r.usage.completion_tokens == 8
    assert r.usage.prompt_tokens == 5
    assert r.usage.total_tokens == 13
    # Greedy is deterministic.
    again = client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=8, temperature=0)
    assert again.choices[0].text == c.text
    assert again.system_fingerprint == r.system_fingerprint


def test_completion_logprobs(client):
    r = client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=6, temperature=0,
                                  logprobs=3)
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == 6
    assert "".join(lp.tokens) == r.choices[0].text
    assert lp.text_offset[0] == 0
    for i, (tok, logprob, top) in enumerate(zip(lp.tokens, lp.token_logprobs, lp.top_logprobs)):
        assert logprob <= 0
        assert 1 <= len(top) <= 3
        # Greedy: the chosen token is the most likely one.
        assert math.isclose(max(top.values()), logprob, rel_tol=0, abs_tol=1e-6)
        if i > 0:
            assert lp.text_offset[i] == lp.text_offset[i - 1] + len(lp.tokens[i - 1].encode())


def test_chat(client):
    r = client.chat.completions.create(
        model=MODEL_NAME, max_tokens=12, temperature=0,
        messages=[{"role": "user", "content": "What is the capital of France?"}])
    assert r.object == "chat.completion"
    assert r.system_fingerprint.startswith("inv-")
    m = r.choices[0].message
    assert m.role == "assistant"
    assert m.content == "The capital of France is Paris."  # greedy SmolLM2-135M-Instruct
    assert r.choices[0].finish_reason == "stop"  # ended by <|im_end|>, not by max_tokens
    assert r.usage.prompt_tokens > 10  # the template adds the role markers
    assert 0 < r.usage.completion_tokens <= 12


def test_chat_logprobs(client):
    r = client.chat.completions.create(
        model=MODEL_NAME, max_tokens=5, temperature=0, logprobs=True, top_logprobs=2,
        messages=[{"role": "user", "content": [{"type": "text", "text": "Say hello."}]}])
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens
    for item in content:
        assert item.logprob <= 0
        assert bytes(item.bytes).decode("utf-8", "replace") == item.token or item.token.startswith("bytes:")
        assert len(item.top_logprobs) == 2
        assert math.isclose(item.top_logprobs[0].logprob, item.logprob, abs_tol=1e-6)


def test_streaming_completion_equals_whole(client):
    whole = client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=10, temperature=0)
    chunks = list(client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=10,
                                            temperature=0, stream=True,
                                            stream_options={"include_usage": True}))
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == whole.choices[0].text
    finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finals == ["length"]
    assert all(c.system_fingerprint == whole.system_fingerprint for c in chunks)
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 10


def test_streaming_chat(client):
    messages = [{"role": "user", "content": "Name three colors."}]
    whole = client.chat.completions.create(model=MODEL_NAME, messages=messages, max_tokens=12,
                                           temperature=0)
    stream = client.chat.completions.create(model=MODEL_NAME, messages=messages, max_tokens=12,
                                            temperature=0, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[-1].usage.total_tokens == whole.usage.total_tokens


def test_seed_reproducibility(client):
    def sample(seed):
        r = client.completions.create(model=MODEL_NAME, prompt="Once upon a time", max_tokens=16,
                                      temperature=0.8, seed=seed, logprobs=0)
        return r.choices[0].text, r.choices[0].logprobs.token_logprobs

    first = sample(1234)
    assert sample(1234) == first  # same seed: same tokens and logprobs
    others = {sample(s)[0] for s in (1, 2, 3)}
    assert len(others | {first[0]}) > 1  # the seed matters


def test_stop_strings(client):
    free = client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=12, temperature=0)
    assert "\n" in free.choices[0].text  # the greedy continuation has a newline to stop at
    r = client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=12, temperature=0,
                                  stop=["\n"])
    assert r.choices[0].finish_reason == "stop"
    assert r.choices[0].text == free.choices[0].text.split("\n")[0]
    s = client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=12, temperature=0,
                                  stop="Paris")
    assert s.choices[0].finish_reason == "stop" and "Paris" not in s.choices[0].text


def test_n_choices_use_derived_seeds(client):
    r = client.completions.create(model=MODEL_NAME, prompt="My favourite food is", max_tokens=8,
                                  temperature=0.9, seed=5, n=2, extra_body={"ignore_eos": True})
    assert [c.index for c in r.choices] == [0, 1]
    assert r.usage.completion_tokens == 16
    one = client.completions.create(model=MODEL_NAME, prompt="My favourite food is", max_tokens=1)
    assert r.usage.prompt_tokens == one.usage.prompt_tokens  # the prompt counted once
    # Choice i runs with seed + i.
    for i in range(2):
        alone = client.completions.create(model=MODEL_NAME, prompt="My favourite food is",
                                          max_tokens=8, temperature=0.9, seed=5 + i,
                                          extra_body={"ignore_eos": True})
        assert alone.choices[0].text == r.choices[i].text

    stream = client.chat.completions.create(
        model=MODEL_NAME, messages=[{"role": "user", "content": "Hi"}], max_tokens=4, n=2,
        temperature=0, stream=True)
    texts = {0: "", 1: ""}
    for chunk in stream:
        for c in chunk.choices:
            texts[c.index] += c.delta.content or ""
    assert texts[0] == texts[1] != ""  # greedy: both choices agree


def test_penalties_and_token_prompt(client):
    ids = client.completions.create(model=MODEL_NAME, prompt=[504, 3575, 282, 4649, 314],
                                    max_tokens=4, temperature=0)
    assert ids.usage.prompt_tokens == 5
    r = client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=8, temperature=0,
                                  presence_penalty=1.0, frequency_penalty=0.5,
                                  extra_body={"repetition_penalty": 1.2, "top_k": 20, "min_p": 0.05,
                                              "ignore_eos": True})
    assert r.usage.completion_tokens == 8


def test_bench_serve_runs_against_the_server(server):
    import os
    import subprocess
    out = subprocess.run([os.environ["INVAR_BIN"], "bench", "serve", "--url", server.url,
                          "-n", "6", "--prompt-len", "16", "--output-len", "4",
                          "--max-concurrency", "3"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr + out.stdout
    assert "requests: 6 ok, 0 failed" in out.stdout
    assert "time to first token" in out.stdout and "inter-token latency" in out.stdout
    assert "one mode (invariant)" in out.stdout  # the CPU backend says so


def test_bench_serve_against_a_random_weight_model():
    """A --random-weights model has a 256-id byte tokenizer: bench serve's default prompt ids
    (up to 9999) are refused, --max-token-id keeps them inside; bytes past 0x7f render as empty
    text chunks, which must still count as tokens."""
    import json
    import os
    import subprocess
    import tempfile

    from conftest import InvarServer
    tiny = os.path.join(os.path.dirname(__file__), "..", "data", "tiny-qwen3")
    srv = InvarServer("--random-weights", "1", model=tiny)
    try:
        def bench(*extra):
            with tempfile.TemporaryDirectory() as d:
                out = subprocess.run([os.environ["INVAR_BIN"], "bench", "serve", "--url", srv.url,
                                      "-n", "4", "--prompt-len", "8", "--output-len", "12",
                                      "--json", os.path.join(d, "r.json"), *extra],
                                     capture_output=True, text=True, timeout=300)
                path = os.path.join(d, "r.json")
                return out, (json.load(open(path)) if os.path.exists(path) else None)
        out, _ = bench()
        assert "requests: 0 ok, 4 failed" in out.stdout, out.stdout + out.stderr
        assert "outside the vocabulary [0, 256)" in out.stdout
        # Sampled: a random model draws bytes of every value, so half the chunks carry no text.
        out, result = bench("--max-token-id", "255", "--temperature", "1")
        assert out.returncode == 0, out.stderr + out.stdout
        assert "requests: 4 ok, 0 failed" in out.stdout, out.stdout
        assert result["output_tokens"] == 48
        assert result["itl_ms"]["count"] == 4 * 11  # every token arrived, empty text or not
    finally:
        assert srv.stop() == 0
