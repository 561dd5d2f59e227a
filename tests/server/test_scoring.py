"""RL scoring through the real openai client, bitwise (issue 13).

A completion is sampled at temperature 0.8 with a seed (logprobs, and its token ids through
vLLM's return_token_ids); then the prompt + completion, as token ids, is scored with vLLM's
prompt_logprobs (max_tokens 0: nothing generated), alone and while other requests keep the
server busy on a server whose small steps cut the scoring prefill into chunks. Every token's
logprob, and its best alternatives, must have exactly the float bits it was sampled with: the
sampler read them from decode rows, the scorer from prefill rows. The classic OpenAI scoring
request (echo, logprobs, max_tokens 0) must agree too. The same comparison against a server
running the fast kernels must find differences (the negative control, R8).
"""

import asyncio
import random
import struct

import httpx
import openai
import pytest

from conftest import MODEL_NAME, InvarServer

PROMPT = ("The old lighthouse keeper climbed the stairs every night, and on the last night of "
          "the year he found")
TOP = 2
WORDS = ("river mountain quiet number garden violet seven engine paper silver window "
         "thunder copper lantern orbit harbor meadow signal cobalt ember").split()


def bits(x):
    """The float's bits: JSON round-trips the server's values exactly."""
    return struct.pack("<d", x)


def sample(client):
    r = client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=32,
                                  temperature=0.8, seed=20261207, logprobs=TOP,
                                  extra_body={"ignore_eos": True, "return_token_ids": True})
    choice = r.choices[0]
    extra = choice.model_extra
    assert len(extra["token_ids"]) == 32
    return {"prompt_ids": extra["prompt_token_ids"], "ids": extra["token_ids"],
            "logprobs": choice.logprobs.token_logprobs,
            "top": [sorted(bits(v) for v in t.values()) for t in choice.logprobs.top_logprobs]}


def scoring_body(sampled):
    return dict(model=MODEL_NAME, prompt=sampled["prompt_ids"] + sampled["ids"], max_tokens=0,
                extra_body={"prompt_logprobs": TOP})


def differing_tokens(sampled, scored_choice):
    """How many completion tokens got other bits (logprob or alternatives) when scored."""
    prompt_logprobs = scored_choice.model_extra["prompt_logprobs"]
    p = len(sampled["prompt_ids"])
    assert len(prompt_logprobs) == p + len(sampled["ids"])
    assert prompt_logprobs[0] is None
    differ = 0
    for j, token in enumerate(sampled["ids"]):
        position = prompt_logprobs[p + j]
        mine = position[str(token)]
        alternatives = sorted(bits(e["logprob"]) for e in position.values() if e["rank"] <= TOP)
        same = (bits(mine["logprob"]) == bits(sampled["logprobs"][j])
                and alternatives == sampled["top"][j])
        differ += not same
    return differ


def test_scoring_returns_the_sampled_logprob_bits(client):
    sampled = sample(client)
    scored = client.completions.create(**scoring_body(sampled))
    choice = scored.choices[0]
    assert choice.text == "" and scored.usage.completion_tokens == 0
    assert choice.finish_reason == "length"
    assert differing_tokens(sampled, choice) == 0

    # The OpenAI way: echo the prompt with its logprobs and generate nothing.
    echo = client.completions.create(model=MODEL_NAME, prompt=sampled["prompt_ids"] + sampled["ids"],
                                     max_tokens=0, echo=True, logprobs=TOP)
    lp = echo.choices[0].logprobs
    p = len(sampled["prompt_ids"])
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    assert [bits(x) for x in lp.token_logprobs[p:]] == [bits(x) for x in sampled["logprobs"]]
    assert [sorted(bits(v) for v in t.values()) for t in lp.top_logprobs[p:]] == sampled["top"]


async def score_under_load(url, sampled, copies, background):
    http = httpx.AsyncClient(limits=httpx.Limits(max_connections=copies + background + 4),
                             timeout=httpx.Timeout(600.0))
    client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="unused", max_retries=0,
                                http_client=http)
    rng = random.Random(7)

    def other():
        prompt = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 80)))
        return dict(model=MODEL_NAME, prompt=prompt, max_tokens=rng.randint(1, 40),
                    temperature=rng.choice([0.0, 1.0]), seed=rng.randint(0, 1 << 30))

    kinds = ["s"] * copies + ["b"] * background
    rng.shuffle(kinds)
    results = await asyncio.gather(*[client.completions.create(
        **(scoring_body(sampled) if k == "s" else other())) for k in kinds])
    await http.aclose()
    return [r.choices[0] for k, r in zip(kinds, results) if k == "s"]


@pytest.fixture(scope="module")
def chunking_server():
    """Steps of 24 tokens and at most 16 logits rows: the 54-token scoring prefill is cut into
    chunks, wherever the background load leaves room."""
    s = InvarServer("--max-num-batched-tokens", "24", "--max-running", "16")
    yield s
    s.stop()


def test_scoring_under_load_and_chunked_prefill_keeps_the_bits(chunking_server):
    client = openai.OpenAI(base_url=chunking_server.url + "/v1", api_key="unused",
                           max_retries=0, timeout=300)
    sampled = sample(client)
    scored = asyncio.run(score_under_load(chunking_server.url, sampled, copies=6, background=30))
    assert [differing_tokens(sampled, c) for c in scored] == [0] * 6


def test_negative_control_fast_kernels_differ():
    """On a server with the fast kernels (split-K GEMM for steps of up to 8 rows) a decode
    step and a scoring prefill sum the same dot products in other orders."""
    fast = InvarServer("--kernels", "fast")
    try:
        client = openai.OpenAI(base_url=fast.url + "/v1", api_key="unused", max_retries=0,
                               timeout=300)
        sampled = sample(client)
        differ = differing_tokens(sampled, client.completions.create(**scoring_body(sampled)).choices[0])
        assert differ > 0, "the comparison cannot see a batch-dependent kernel"
        print(f"fast kernels: {differ} of {len(sampled['ids'])} scored tokens differ")
    finally:
        assert fast.stop() == 0
