"""Structured output through the real openai client (issue 13): response_format (json_object,
json_schema), guided_json, guided_regex, guided_choice and guided_grammar constrain what is
drawn; the reported logprobs stay the model's raw ones (bitwise equal to scoring the output);
a constrained request gives the same bits alone and inside a busy batch; bad constraints are a
400 naming the field."""

import asyncio
import json
import re
import struct

import httpx
import openai
import pytest

from conftest import MODEL_NAME

CAPITAL = [{"role": "user", "content": "What is the capital of France?"}]
CITY_SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "enum": ["Paris", "London", "Rome"]},
        "country": {"type": "string", "maxLength": 20},
        "population_millions": {"type": "integer", "minimum": 0, "maximum": 100},
    },
    "required": ["city", "country", "population_millions"],
    "additionalProperties": False,
}


def bits(x):
    return struct.pack("<d", x)


def check_city(text):
    value = json.loads(text)
    assert set(value) == {"city", "country", "population_millions"}
    assert value["city"] in ("Paris", "London", "Rome")
    assert isinstance(value["country"], str) and len(value["country"]) <= 20
    assert isinstance(value["population_millions"], int)
    assert 0 <= value["population_millions"] <= 100
    return value


def test_guided_choice(client):
    choices = ["Paris", "London", "Berlin"]
    r = client.chat.completions.create(model=MODEL_NAME, messages=CAPITAL, max_tokens=10,
                                       temperature=0, extra_body={"guided_choice": choices})
    assert r.choices[0].message.content in choices
    assert r.choices[0].finish_reason == "stop"
    sampled = client.chat.completions.create(model=MODEL_NAME, messages=CAPITAL, max_tokens=10,
                                             temperature=1.0, seed=3, n=4,
                                             extra_body={"guided_choice": choices})
    assert all(c.message.content in choices for c in sampled.choices)


def test_guided_regex(client):
    pattern = r"\(\d{3}\) \d{3}-\d{4}"
    r = client.completions.create(model=MODEL_NAME, prompt="Call me at", max_tokens=30,
                                  temperature=0.8, seed=11, extra_body={"guided_regex": pattern})
    assert re.fullmatch(pattern, r.choices[0].text), r.choices[0].text
    assert r.choices[0].finish_reason == "stop"


def test_response_format_json_schema(client):
    r = client.chat.completions.create(
        model=MODEL_NAME, messages=CAPITAL, max_tokens=80, temperature=0,
        response_format={"type": "json_schema",
                         "json_schema": {"name": "city", "schema": CITY_SCHEMA, "strict": True}})
    assert r.choices[0].finish_reason == "stop"
    check_city(r.choices[0].message.content)
    # vLLM's guided_json, on the completions route, sampled.
    c = client.completions.create(model=MODEL_NAME, prompt="A city, as JSON:", max_tokens=80,
                                  temperature=0.8, seed=5, extra_body={"guided_json": CITY_SCHEMA})
    assert c.choices[0].finish_reason == "stop"
    check_city(c.choices[0].text)


def test_response_format_json_object(client):
    r = client.chat.completions.create(
        model=MODEL_NAME, max_tokens=120, temperature=0, response_format={"type": "json_object"},
        messages=[{"role": "user", "content": "Describe a cat as a JSON object."}])
    assert r.choices[0].finish_reason == "stop", r.choices[0].message.content
    assert isinstance(json.loads(r.choices[0].message.content), dict)
    plain = client.chat.completions.create(
        model=MODEL_NAME, max_tokens=8, temperature=0,
        messages=[{"role": "user", "content": "Describe a cat as a JSON object."}])
    assert not plain.choices[0].message.content.startswith("{")  # the constraint did something


def test_guided_grammar_and_streaming(client):
    grammar = 'root ::= answer "." \nanswer ::= "yes" | "no"'
    r = client.completions.create(model=MODEL_NAME, prompt="Is Paris in France? Answer:",
                                  max_tokens=5, temperature=0, extra_body={"guided_grammar": grammar})
    assert r.choices[0].text in ("yes.", "no.")
    streamed = "".join(ch.choices[0].text for ch in client.completions.create(
        model=MODEL_NAME, prompt="Is Paris in France? Answer:", max_tokens=5, temperature=0,
        stream=True, extra_body={"guided_grammar": grammar}) if ch.choices)
    assert streamed == r.choices[0].text


def test_constrained_logprobs_are_the_raw_ones(client):
    """The mask changes what is drawn, not a logprob: each reported logprob equals, bit for bit,
    the one scoring the output gives (prompt_logprobs reads the unmasked rows)."""
    r = client.completions.create(model=MODEL_NAME, prompt="A city, as JSON:", max_tokens=80,
                                  temperature=0.8, seed=9, logprobs=1,
                                  extra_body={"guided_json": CITY_SCHEMA, "return_token_ids": True})
    choice = r.choices[0]
    check_city(choice.text)
    prompt_ids, ids = choice.model_extra["prompt_token_ids"], choice.model_extra["token_ids"]
    scored = client.completions.create(model=MODEL_NAME, prompt=prompt_ids + ids, max_tokens=0,
                                       extra_body={"prompt_logprobs": 0})
    positions = scored.choices[0].model_extra["prompt_logprobs"][len(prompt_ids):]
    assert len(positions) == len(ids) == len(choice.logprobs.token_logprobs)
    for token, position, logprob in zip(ids, positions, choice.logprobs.token_logprobs):
        assert bits(position[str(token)]["logprob"]) == bits(logprob)


async def alone_and_in_a_crowd(url, body, others):
    http = httpx.AsyncClient(limits=httpx.Limits(max_connections=others + 4),
                             timeout=httpx.Timeout(600.0))
    client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="unused", max_retries=0,
                                http_client=http)
    alone = await client.completions.create(**body)
    crowd = [dict(model=MODEL_NAME, prompt=f"Story {i}: once upon a time", max_tokens=20 + i,
                  temperature=1.0, seed=i) for i in range(others)]
    for i in range(0, others, 3):  # some of the crowd constrained too
        crowd[i]["extra_body"] = {"guided_regex": r"[a-z ]{5,40}\."}
    results = await asyncio.gather(*[client.completions.create(**b)
                                      for b in crowd[:others // 2] + [body] + crowd[others // 2:]])
    await http.aclose()
    return alone, results[others // 2]


def test_constrained_sampling_is_batch_invariant(server):
    body = dict(model=MODEL_NAME, prompt="A city, as JSON:", max_tokens=80, temperature=0.8,
                seed=21, logprobs=1, extra_body={"guided_json": CITY_SCHEMA})
    alone, busy = asyncio.run(alone_and_in_a_crowd(server.url, body, others=12))
    check_city(alone.choices[0].text)
    assert busy.choices[0].text == alone.choices[0].text
    assert ([bits(x) for x in busy.choices[0].logprobs.token_logprobs]
            == [bits(x) for x in alone.choices[0].logprobs.token_logprobs])


@pytest.mark.parametrize("extra,param,fragment", [
    ({"guided_regex": "(ab"}, "guided_regex", "cannot be compiled"),
    ({"guided_grammar": "root ::= ("}, "guided_grammar", "cannot be compiled"),
    ({"guided_choice": ["a"], "guided_regex": "a"}, "guided_choice", "give one"),
    ({"guided_json": 3}, "guided_json", "JSON schema"),
    ({"response_format": {"type": "yaml"}}, "response_format", "yaml"),
    ({"guided_choice": ["a"], "min_tokens": 2}, "min_tokens", "cannot be combined"),
])
def test_bad_constraints_are_400(client, extra, param, fragment):
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=MODEL_NAME, prompt="Hi", max_tokens=4, extra_body=extra)
    assert fragment in e.value.body["message"]
    assert e.value.body["param"] == param
