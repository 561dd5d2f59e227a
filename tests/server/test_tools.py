"""Tools and function calling through the real openai client (issue 13): SmolLM2 served with
Qwen3's template (Hermes-style <tool_call> blocks, so the hermes parser is picked). A forced call
(tool_choice required or named) is produced and parsed, whole and streamed as OpenAI and vLLM
stream calls (the name, then the arguments in pieces that make the whole response's arguments);
the conversation goes on with the tool's result; tool_choice none leaves the output alone; auto
parses a call the model writes (here forced by guided_regex) and keeps malformed JSON as
content (streamed, a call that breaks after it began ends in an error event and finish_reason
"error"); bad tools are a 400 naming the field; a request with tools gives the same bits alone
and inside a busy batch (and, with the fast kernels, the negative control, does not). Llama 3.1's
and Mistral's templates pick their own formats; the ids Mistral models give their calls
([CALL_ID]) are the calls' ids and go back through the template."""

import asyncio
import json
import os
import struct

import httpx
import openai
import pytest

from conftest import MODEL_NAME, InvarServer

TEMPLATES = os.path.join(os.path.dirname(__file__), "..", "data", "tokenizer", "templates")
ASK = [{"role": "user", "content": "What is the weather like in Paris today?"}]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "enum": ["Paris", "London", "Rome"]},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "unit"],
        },
    },
}
TIME = {"type": "function", "function": {"name": "get_time", "description": "The time now",
                                         "parameters": {"type": "object", "properties": {}}}}
TOOLS = [WEATHER, TIME]


def bits(x):
    return struct.pack("<d", x)


@pytest.fixture(scope="module")
def qwen_server():
    s = InvarServer("--chat-template", os.path.join(TEMPLATES, "qwen3.jinja"))
    yield s
    assert s.stop() == 0


@pytest.fixture(scope="module")
def qwen(qwen_server):
    return openai.OpenAI(base_url=qwen_server.url + "/v1", api_key="unused", max_retries=0,
                         timeout=300)


def check_weather_call(call, id_prefix="call_"):
    assert call.type == "function"
    assert call.id.startswith(id_prefix)
    assert call.function.name == "get_weather"
    args = json.loads(call.function.arguments)
    assert set(args) == {"city", "unit"}
    assert args["city"] in ("Paris", "London", "Rome")
    assert args["unit"] in ("celsius", "fahrenheit")
    return args


def test_required_call_is_produced_and_parsed(qwen):
    r = qwen.chat.completions.create(model=MODEL_NAME, messages=ASK, tools=TOOLS,
                                     tool_choice="required", temperature=0, max_tokens=80)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert len(choice.message.tool_calls) == 1
    call = choice.message.tool_calls[0]
    assert call.function.name in ("get_weather", "get_time")
    json.loads(call.function.arguments)


def test_named_call_streamed_equals_whole(qwen):
    named = {"type": "function", "function": {"name": "get_weather"}}
    whole = qwen.chat.completions.create(model=MODEL_NAME, messages=ASK, tools=TOOLS,
                                         tool_choice=named, temperature=0, max_tokens=80)
    assert whole.choices[0].finish_reason == "tool_calls"
    args = check_weather_call(whole.choices[0].message.tool_calls[0])

    stream = qwen.chat.completions.create(model=MODEL_NAME, messages=ASK, tools=TOOLS,
                                          tool_choice=named, temperature=0, max_tokens=80,
                                          stream=True)
    deltas, finish, content = [], None, ""
    for chunk in stream:
        choice = chunk.choices[0]
        content += choice.delta.content or ""
        deltas += choice.delta.tool_calls or []
        finish = choice.finish_reason or finish
    assert finish == "tool_calls"
    assert content == ""
    # OpenAI's shape: the first delta of a call has its index, id, type and name; the next ones
    # add fragments of the arguments.
    assert deltas[0].index == 0 and deltas[0].id.startswith("call_")
    assert deltas[0].type == "function" and deltas[0].function.name == "get_weather"
    assert deltas[0].function.arguments == ""
    assert all(d.index == 0 and d.id is None for d in deltas[1:])
    # The arguments come in pieces as they are generated, not at once at the end.
    assert len(deltas) > 3
    streamed_args = "".join(d.function.arguments or "" for d in deltas)
    assert json.loads(streamed_args) == args
    assert streamed_args == whole.choices[0].message.tool_calls[0].function.arguments


def test_several_choices_stream_their_own_calls(qwen):
    """n = 2 with a seed: each choice's stream has its own parser and call index 0, and gives
    the calls of the same request not streamed."""
    body = dict(model=MODEL_NAME, messages=ASK, tools=TOOLS, tool_choice="required", n=2,
                temperature=1.0, seed=11, max_tokens=80)
    whole = qwen.chat.completions.create(**body)
    calls = {0: [], 1: []}
    finish = {}
    for chunk in qwen.chat.completions.create(**body, stream=True):
        choice = chunk.choices[0]
        calls[choice.index] += choice.delta.tool_calls or []
        if choice.finish_reason:
            finish[choice.index] = choice.finish_reason
    assert finish == {0: "tool_calls", 1: "tool_calls"}
    for i in (0, 1):
        assert all(d.index == 0 for d in calls[i])
        expected = whole.choices[i].message.tool_calls[0]
        assert calls[i][0].function.name == expected.function.name
        assert "".join(d.function.arguments or "" for d in calls[i]) == \
            expected.function.arguments


def test_conversation_continues_with_the_tool_result(qwen, qwen_server):
    named = {"type": "function", "function": {"name": "get_weather"}}
    first = qwen.chat.completions.create(model=MODEL_NAME, messages=ASK, tools=TOOLS,
                                         tool_choice=named, temperature=0, max_tokens=80)
    call = first.choices[0].message.tool_calls[0]
    messages = ASK + [
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "22 degrees celsius, sunny"},
    ]
    second = qwen.chat.completions.create(model=MODEL_NAME, messages=messages, tools=TOOLS,
                                          temperature=0, max_tokens=12,
                                          extra_body={"return_token_ids": True})
    answer = second.choices[0]
    assert answer.finish_reason in ("stop", "length", "tool_calls")
    assert answer.message.content or answer.message.tool_calls
    # The prompt holds the call as the template writes it, then the tool's result.
    ids = second.model_extra["prompt_token_ids"]
    prompt = httpx.post(qwen_server.url + "/detokenize", json={"tokens": ids}).json()["prompt"]
    written = ('<tool_call>\n{"name": "get_weather", "arguments": '
               + json.dumps(json.loads(call.function.arguments)) + "}\n</tool_call>")
    assert written in prompt, prompt
    assert "<tool_response>\n22 degrees celsius, sunny\n</tool_response>" in prompt
    assert prompt.index(written) < prompt.index("<tool_response>")


CALL_TEXT = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome", "unit": "celsius"}}\n</tool_call>'
REGEX_CALL = CALL_TEXT.replace("{", r"\{").replace("}", r"\}").replace("\n", r"\n")


def test_auto_parses_a_call_the_model_writes(qwen):
    # guided_regex makes the model write the call text; tool_choice auto parses it.
    r = qwen.chat.completions.create(model=MODEL_NAME, messages=ASK, tools=TOOLS, temperature=0,
                                     max_tokens=60, extra_body={"guided_regex": REGEX_CALL})
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert json.loads(choice.message.tool_calls[0].function.arguments) == {
        "city": "Rome", "unit": "celsius"}
    # tool_choice none: the same output stays text.
    r = qwen.chat.completions.create(model=MODEL_NAME, messages=ASK, tools=TOOLS, temperature=0,
                                     max_tokens=60, tool_choice="none",
                                     extra_body={"guided_regex": REGEX_CALL})
    assert r.choices[0].message.content == CALL_TEXT
    assert not r.choices[0].message.tool_calls
    assert r.choices[0].finish_reason == "stop"


def forced_output_regex(text):
    return text.replace("[", r"\[").replace("]", r"\]").replace("{", r"\{") \
        .replace("}", r"\}").replace("\n", r"\n")


def raw_stream(url, body):
    """The SSE events of a streamed chat completion, as JSON (without the final [DONE])."""
    events = []
    with httpx.stream("POST", url + "/v1/chat/completions", json=dict(body, stream=True),
                      timeout=300) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                events.append(json.loads(line[len("data: "):]))
    return events


def test_malformed_call_is_plain_content(qwen):
    # Malformed before it could begin (the arguments are no object): never a call, streamed or
    # not.
    bad = '<tool_call>\n{"name": "get_weather", "arguments": "Rome"}\n</tool_call>'
    for stream in (False, True):
        r = qwen.chat.completions.create(model=MODEL_NAME, messages=ASK, tools=TOOLS,
                                         temperature=0, max_tokens=60, stream=stream,
                                         extra_body={"guided_regex": forced_output_regex(bad)})
        if stream:
            chunks = list(r)
            text = "".join(c.choices[0].delta.content or "" for c in chunks)
            assert not any(c.choices[0].delta.tool_calls for c in chunks)
            finish = chunks[-1].choices[0].finish_reason
        else:
            text, finish = r.choices[0].message.content, r.choices[0].finish_reason
            assert not r.choices[0].message.tool_calls
        assert text == bad
        assert finish == "stop"


def test_call_broken_after_it_began_streaming(qwen, qwen_server):
    """The arguments were already streaming when the JSON went wrong: the call cannot be taken
    back, so the stream says so (an error event naming it, finish_reason "error") and its text
    follows as content, as the response without streaming has it."""
    bad = '<tool_call>\n{"name": "get_weather", "arguments": {"city": Rome}}\n</tool_call>'
    regex = forced_output_regex(bad)
    whole = qwen.chat.completions.create(model=MODEL_NAME, messages=ASK, tools=TOOLS,
                                         temperature=0, max_tokens=60,
                                         extra_body={"guided_regex": regex})
    assert whole.choices[0].message.content == bad
    assert not whole.choices[0].message.tool_calls
    assert whole.choices[0].finish_reason == "stop"

    body = dict(model=MODEL_NAME, messages=ASK, tools=TOOLS, temperature=0, max_tokens=60,
                guided_regex=regex)
    events = raw_stream(qwen_server.url, body)
    errors = [e["error"] for e in events if "error" in e]
    assert len(errors) == 1 and errors[0]["code"] == "malformed_tool_call"
    chunks = [e for e in events if "choices" in e]
    deltas = [d for c in chunks for d in c["choices"][0]["delta"].get("tool_calls", [])]
    assert deltas[0]["function"]["name"] == "get_weather"
    assert "".join(d["function"]["arguments"] for d in deltas) == '{"city": '
    content = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert content == bad
    assert chunks[-1]["choices"][0]["finish_reason"] == "error"
    # A call the output cuts off (max_tokens) inside its arguments breaks the same way.
    full = qwen.chat.completions.create(model=MODEL_NAME, messages=ASK, tools=TOOLS,
                                        temperature=0, max_tokens=60, logprobs=True,
                                        extra_body={"guided_regex": REGEX_CALL})
    text, cut = "", 0
    while '"city": "' not in text:
        text += full.choices[0].logprobs.content[cut].token
        cut += 1
    events = raw_stream(qwen_server.url, dict(body, guided_regex=REGEX_CALL, max_tokens=cut))
    assert [e["error"]["code"] for e in events if "error" in e] == ["malformed_tool_call"]
    chunks = [e for e in events if "choices" in e]
    assert chunks[-1]["choices"][0]["finish_reason"] == "error"


def test_tool_choice_none_keeps_tools_in_the_template(qwen):
    with_tools = qwen.chat.completions.create(model=MODEL_NAME, messages=ASK, tools=TOOLS,
                                              tool_choice="none", temperature=0, max_tokens=1)
    without = qwen.chat.completions.create(model=MODEL_NAME, messages=ASK, temperature=0,
                                           max_tokens=1)
    assert with_tools.usage.prompt_tokens > without.usage.prompt_tokens + 50
    assert not with_tools.choices[0].message.tool_calls


@pytest.mark.parametrize("extra,param", [
    ({"tools": [{"type": "function", "function": {"description": "no name"}}]},
     "tools[0].function.name"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": "object"}}]},
     "tools[0].function.parameters"),
    ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}},
     "tool_choice"),
    ({"tools": TOOLS, "tool_choice": "always"}, "tool_choice"),
    ({"messages": ASK + [{"role": "tool", "content": "22 C"}]}, "messages[1].tool_call_id"),
])
def test_bad_tools_are_400_naming_the_field(qwen, extra, param):
    body = dict(model=MODEL_NAME, messages=ASK, max_tokens=1)
    body.update(extra)
    with pytest.raises(openai.BadRequestError) as e:
        qwen.chat.completions.create(**body)
    assert e.value.body["param"] == param
    # The server keeps serving.
    assert qwen.chat.completions.create(model=MODEL_NAME, messages=ASK, max_tokens=1).choices


async def alone_and_in_a_crowd(url, body, others):
    http = httpx.AsyncClient(limits=httpx.Limits(max_connections=others + 4),
                             timeout=httpx.Timeout(600.0))
    client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="unused", max_retries=0,
                                http_client=http)
    alone = await client.chat.completions.create(**body)
    crowd = [dict(model=MODEL_NAME, messages=[{"role": "user", "content": f"Story {i}, please"}],
                  max_tokens=20 + i, temperature=1.0, seed=i) for i in range(others)]
    for i in range(0, others, 3):  # some of the crowd call tools too
        crowd[i].update(tools=TOOLS, tool_choice="required")
    results = await asyncio.gather(*[client.chat.completions.create(**b)
                                     for b in crowd[:others // 2] + [body] + crowd[others // 2:]])
    await http.aclose()
    return alone, results[others // 2]


def tool_call_alone_and_busy(url):
    """A forced call with logprobs, alone and amid 12 other requests: (alone, busy) choices."""
    body = dict(model=MODEL_NAME, messages=ASK, tools=TOOLS, tool_choice="required",
                temperature=0.8, seed=7, max_tokens=80, logprobs=True)
    alone, busy = asyncio.run(alone_and_in_a_crowd(url, body, others=12))
    return alone.choices[0], busy.choices[0]


def logprob_bits(choice):
    return [(t.token, bits(t.logprob)) for t in choice.logprobs.content]


def test_tool_call_is_batch_invariant(qwen_server):
    a, b = tool_call_alone_and_busy(qwen_server.url)
    assert a.finish_reason == b.finish_reason == "tool_calls"
    assert [(c.function.name, c.function.arguments) for c in a.message.tool_calls] == \
        [(c.function.name, c.function.arguments) for c in b.message.tool_calls]
    assert logprob_bits(a) == logprob_bits(b)


def test_negative_control_fast_kernels_differ():
    """The same comparison on a server with the fast kernels (split-K GEMM for steps of up to 8
    rows): alone, the call's decode steps take the split-K path, in the crowd they do not, and
    the logprobs must differ, or the test above could not see a batch-dependent kernel (R8)."""
    fast = InvarServer("--chat-template", os.path.join(TEMPLATES, "qwen3.jinja"),
                       "--kernels", "fast")
    try:
        a, b = tool_call_alone_and_busy(fast.url)
        assert a.message.tool_calls and b.message.tool_calls
        differ = sum(x != y for x, y in zip(logprob_bits(a), logprob_bits(b)))
        print(f"fast kernels: {differ} of {len(a.logprobs.content)} logprobs differ")
        assert differ > 0, "the comparison cannot see a batch-dependent kernel"
    finally:
        assert fast.stop() == 0


def test_llama3_json_format_from_the_template():
    """Llama 3.1's template teaches {"name": ..., "parameters": ...}: the server picks the
    llama3_json parser for it, forces calls in that shape and parses them back."""
    s = InvarServer("--chat-template", os.path.join(TEMPLATES, "llama3_1.jinja"))
    try:
        c = openai.OpenAI(base_url=s.url + "/v1", api_key="unused", max_retries=0, timeout=300)
        named = {"type": "function", "function": {"name": "get_weather"}}
        r = c.chat.completions.create(model=MODEL_NAME, messages=ASK, tools=TOOLS,
                                      tool_choice=named, temperature=0, max_tokens=80,
                                      extra_body={"return_token_ids": True})
        assert r.choices[0].finish_reason == "tool_calls"
        check_weather_call(r.choices[0].message.tool_calls[0])
        output = httpx.post(s.url + "/detokenize",
                            json={"tokens": r.choices[0].model_extra["token_ids"]}).json()
        assert output["prompt"].startswith('{"name": "get_weather", "parameters": {')
        # The same output streamed.
        deltas = []
        for chunk in c.chat.completions.create(model=MODEL_NAME, messages=ASK, tools=TOOLS,
                                               tool_choice=named, temperature=0,
                                               max_tokens=80, stream=True):
            deltas += chunk.choices[0].delta.tool_calls or []
        assert deltas[0].function.name == "get_weather"
        assert "".join(d.function.arguments or "" for d in deltas) == \
            r.choices[0].message.tool_calls[0].function.arguments
        assert any("tool calls llama3_json" in line for line in s.log)
    finally:
        assert s.stop() == 0


def test_tool_call_parser_option(qwen_server):
    assert any("tool calls hermes" in line for line in qwen_server.log)  # Qwen3's template
    for parser in ("llama3_json", "mistral"):
        s = InvarServer("--chat-template", os.path.join(TEMPLATES, "qwen3.jinja"),
                        "--tool-call-parser", parser)
        try:
            assert any(f"tool calls {parser}" in line for line in s.log)
        finally:
            assert s.stop() == 0


def test_mistral_format_from_the_template():
    """Mistral v0.3's template writes [TOOL_CALLS]: the server picks the mistral parser, forces
    calls as [TOOL_CALLS][{"name", "arguments"}], gives them the 9-character ids the template
    takes back, streams their arguments in pieces, and reads the v11 shape name[ARGS]{...}."""
    s = InvarServer("--chat-template", os.path.join(TEMPLATES, "mistral_v0_3.jinja"))
    try:
        assert any("tool calls mistral" in line for line in s.log)
        c = openai.OpenAI(base_url=s.url + "/v1", api_key="unused", max_retries=0, timeout=300)
        named = {"type": "function", "function": {"name": "get_weather"}}
        body = dict(model=MODEL_NAME, messages=ASK, tools=TOOLS, tool_choice=named,
                    temperature=0, max_tokens=80)
        r = c.chat.completions.create(**body, extra_body={"return_token_ids": True})
        assert r.choices[0].finish_reason == "tool_calls"
        call = r.choices[0].message.tool_calls[0]
        check_weather_call(call, id_prefix="")
        assert len(call.id) == 9 and call.id.isalnum()
        output = httpx.post(s.url + "/detokenize",
                            json={"tokens": r.choices[0].model_extra["token_ids"]}).json()
        assert output["prompt"].startswith('[TOOL_CALLS][{"name": "get_weather", "arguments": {')

        deltas = []
        for chunk in c.chat.completions.create(**body, stream=True):
            deltas += chunk.choices[0].delta.tool_calls or []
        assert deltas[0].function.name == "get_weather" and len(deltas) > 3
        assert "".join(d.function.arguments or "" for d in deltas) == call.function.arguments

        # The conversation goes on through the template, which checks the ids.
        messages = ASK + [r.choices[0].message.model_dump(exclude_none=True),
                          {"role": "tool", "tool_call_id": call.id, "content": "22 C"}]
        assert c.chat.completions.create(model=MODEL_NAME, messages=messages, tools=TOOLS,
                                         max_tokens=4).choices

        # The v11 shape, written by the model (forced here by guided_regex), with tool_choice
        # auto.
        v11 = '[TOOL_CALLS]get_weather[ARGS]{"city": "Rome", "unit": "celsius"}'
        auto = dict(model=MODEL_NAME, messages=ASK, tools=TOOLS, temperature=0, max_tokens=60,
                    extra_body={"guided_regex": forced_output_regex(v11)})
        r = c.chat.completions.create(**auto)
        assert r.choices[0].finish_reason == "tool_calls"
        assert r.choices[0].message.tool_calls[0].function.arguments == \
            '{"city": "Rome", "unit": "celsius"}'
        deltas = []
        for chunk in c.chat.completions.create(**auto, stream=True):
            deltas += chunk.choices[0].delta.tool_calls or []
        assert "".join(d.function.arguments or "" for d in deltas) == \
            '{"city": "Rome", "unit": "celsius"}'
    finally:
        assert s.stop() == 0


def test_mistral_call_ids_from_the_model():
    """Mistral-Small-3.2's template (tokenizer v11) has the model name its calls:
    [TOOL_CALLS]name[CALL_ID]id[ARGS]{...}, one after another. The model's ids are the calls'
    ids, whole and streamed, and come back through the template with the calls and their
    results."""
    s = InvarServer("--chat-template", os.path.join(TEMPLATES, "mistral_small_3_2.jinja"))
    try:
        assert any("tool calls mistral" in line for line in s.log)
        c = openai.OpenAI(base_url=s.url + "/v1", api_key="unused", max_retries=0, timeout=300)
        written = ('[TOOL_CALLS]get_weather[CALL_ID]a1B2c3D4e[ARGS]{"city": "Rome", "unit": '
                   '"celsius"}[TOOL_CALLS]get_time[CALL_ID]Zz9Yy8Xx7[ARGS]{}')
        body = dict(model=MODEL_NAME, messages=ASK, tools=TOOLS, temperature=0, max_tokens=200,
                    extra_body={"guided_regex": forced_output_regex(written)})
        r = c.chat.completions.create(**body)
        assert r.choices[0].finish_reason == "tool_calls"
        calls = r.choices[0].message.tool_calls
        assert [(x.id, x.function.name, x.function.arguments) for x in calls] == [
            ("a1B2c3D4e", "get_weather", '{"city": "Rome", "unit": "celsius"}'),
            ("Zz9Yy8Xx7", "get_time", "{}")]

        ids, arguments = {}, {}
        for chunk in c.chat.completions.create(**body, stream=True):
            for d in chunk.choices[0].delta.tool_calls or []:
                if d.id:
                    ids[d.index] = d.id
                arguments[d.index] = arguments.get(d.index, "") + (d.function.arguments or "")
        assert ids == {0: "a1B2c3D4e", 1: "Zz9Yy8Xx7"}
        assert arguments == {0: calls[0].function.arguments, 1: calls[1].function.arguments}

        # An id the template would refuse back is replaced by one it takes.
        odd = '[TOOL_CALLS]get_time[CALL_ID]call_1[ARGS]{}'
        r2 = c.chat.completions.create(**dict(body, extra_body={
            "guided_regex": forced_output_regex(odd)}))
        fresh = r2.choices[0].message.tool_calls[0].id
        assert len(fresh) == 9 and fresh.isalnum()

        # The conversation goes on: the template writes each call with its id, and each result
        # after the id of the call it answers.
        messages = ASK + [r.choices[0].message.model_dump(exclude_none=True),
                          {"role": "tool", "tool_call_id": "a1B2c3D4e", "content": "22 C"},
                          {"role": "tool", "tool_call_id": "Zz9Yy8Xx7", "content": "14:05"}]
        second = c.chat.completions.create(model=MODEL_NAME, messages=messages, tools=TOOLS,
                                           max_tokens=4, extra_body={"return_token_ids": True})
        prompt_ids = second.model_extra["prompt_token_ids"]
        prompt = httpx.post(s.url + "/detokenize", json={"tokens": prompt_ids}).json()["prompt"]
        results = ("[TOOL_RESULTS]a1B2c3D4e[TOOL_CONTENT]22 C[/TOOL_RESULTS]"
                   "[TOOL_RESULTS]Zz9Yy8Xx7[TOOL_CONTENT]14:05[/TOOL_RESULTS]")
        assert written in prompt and results in prompt, prompt
        assert prompt.index(written) < prompt.index(results)
    finally:
        assert s.stop() == 0
