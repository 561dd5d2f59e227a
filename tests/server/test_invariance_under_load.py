"""The invariance contract through the HTTP API, under load (issue: serving, acceptance).

200 identical requests (max_tokens 200) interleaved with 200 random background requests of
other lengths, all in flight at once, must give exactly one completion text and bitwise equal
logprobs, equal to the same request run alone on an idle server; greedy and seeded at
temperature 0.8; with the prefix cache cold (first run), hot (after it) and off.
"""

import asyncio
import random

import httpx
import openai
import pytest

from conftest import MODEL_NAME, InvarServer

TARGET_PROMPT = ("Write a long, detailed story about a lighthouse keeper who finds a message "
                 "in a bottle. Describe the sea, the weather and the keeper's thoughts.")
WORDS = ("river mountain quiet number garden violet seven engine paper silver window "
         "thunder copper lantern orbit harbor meadow signal cobalt ember").split()
TARGETS = 200
BACKGROUND = 200


def target_body(temperature):
    body = dict(model=MODEL_NAME, prompt=TARGET_PROMPT, max_tokens=200, logprobs=2,
                temperature=temperature, extra_body={"ignore_eos": True})
    if temperature > 0:
        body["seed"] = 20261125
    return body


def background_body(rng):
    prompt = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 120)))
    if rng.random() < 0.3:  # shares the target's prefix: prefix cache traffic
        prompt = TARGET_PROMPT[: rng.randint(10, len(TARGET_PROMPT))] + " " + prompt
    return dict(model=MODEL_NAME, prompt=prompt, max_tokens=rng.randint(1, 64),
                temperature=rng.choice([0.0, 1.0]), seed=rng.randint(0, 1 << 30))


def outcome(completion):
    choice = completion.choices[0]
    lp = choice.logprobs
    # JSON floats round-trip exactly, so == on them is a bitwise comparison.
    return (choice.text, tuple(lp.tokens), tuple(lp.token_logprobs),
            tuple(tuple(sorted(t.items())) for t in lp.top_logprobs))


async def run_loaded(url, temperature):
    limits = httpx.Limits(max_connections=TARGETS + BACKGROUND + 8)
    http = httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(900.0))
    client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="unused", max_retries=0,
                                http_client=http)
    rng = random.Random(temperature * 1000 + 17)
    kinds = ["t"] * TARGETS + ["b"] * BACKGROUND
    rng.shuffle(kinds)
    calls = [client.completions.create(**(target_body(temperature) if k == "t"
                                          else background_body(rng))) for k in kinds]
    results = await asyncio.gather(*calls)
    await http.aclose()
    return [outcome(r) for r, k in zip(results, kinds) if k == "t"]


def run_alone(url, temperature):
    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=300)
    return outcome(client.completions.create(**target_body(temperature)))


@pytest.mark.parametrize("temperature", [0.0, 0.8], ids=["greedy", "seeded"])
def test_loaded_equals_alone(temperature):
    server = InvarServer("--max-queue", "1000", "--max-running", "64")
    try:
        alone_cold = run_alone(server.url, temperature)  # fresh server: prefix cache cold
        assert len(alone_cold[1]) == 200
        loaded = asyncio.run(run_loaded(server.url, temperature))
        assert len(loaded) == TARGETS
        unique = set(loaded)
        assert len(unique) == 1, f"{len(unique)} different completions under load"
        assert loaded[0] == alone_cold, "under load differs from alone"
        assert run_alone(server.url, temperature) == alone_cold  # prefix cache hot
        assert server.wait_idle()["invar_kv_blocks_used"] == 0
    finally:
        assert server.stop() == 0

    no_cache = InvarServer("--no-prefix-cache")
    try:
        assert run_alone(no_cache.url, temperature) == alone_cold
    finally:
        assert no_cache.stop() == 0
