"""The Python API's shapes and behaviour: outputs, stop conditions, n, structured output,
score batches, and clear Python exceptions for bad input (never a crash)."""

import json

import pytest

import invar

from conftest import all_bits


def test_greedy_generate_is_deterministic_and_well_formed(llm):
    out = llm.generate(["The capital of France is"], invar.SamplingParams(max_tokens=8))
    assert len(out) == 1
    o = out[0].outputs[0]
    assert len(o.token_ids) == len(o.logprobs) <= 8
    assert o.finish_reason in ("stop", "length")
    assert o.text == llm.decode(o.token_ids)
    assert all(lp <= 0 for lp in o.logprobs)
    assert o.top_logprobs is None and out[0].prompt_logprobs is None
    again = llm.generate("The capital of France is", invar.SamplingParams(max_tokens=8))
    assert again[0].outputs[0].token_ids == o.token_ids


def test_default_sampling_is_greedy_with_sixteen_tokens(llm):
    o = llm.generate("Once upon a time", invar.SamplingParams(ignore_eos=True))[0].outputs[0]
    assert len(o.token_ids) == 16
    greedy = invar.SamplingParams(temperature=0, ignore_eos=True)
    assert llm.generate("Once upon a time", greedy)[0].outputs[0].token_ids == o.token_ids


def test_stop_string_ends_the_output(llm):
    params = invar.SamplingParams(max_tokens=32, ignore_eos=True)
    full = llm.generate("Count: one, two, three,", params)[0].outputs[0].text
    word = full.split()[1]  # a word the greedy continuation writes
    stopped = llm.generate("Count: one, two, three,",
                           invar.SamplingParams(max_tokens=32, ignore_eos=True, stop=[word]))
    o = stopped[0].outputs[0]
    assert o.finish_reason == "stop" and word not in o.text and full.startswith(o.text)


def test_n_outputs_use_consecutive_seeds(llm):
    two = llm.generate("Hello", invar.SamplingParams(temperature=1.0, seed=3, n=2, max_tokens=6))
    assert [o.index for o in two[0].outputs] == [0, 1]
    second = llm.generate("Hello", invar.SamplingParams(temperature=1.0, seed=4, max_tokens=6))
    assert two[0].outputs[1].token_ids == second[0].outputs[0].token_ids


def test_prompt_logprobs_match_score(llm):
    out = llm.generate("The sea is", invar.SamplingParams(max_tokens=1, prompt_logprobs=0))[0]
    assert out.prompt_logprobs[0] is None
    assert all_bits(out.prompt_logprobs) == all_bits(llm.score(out.prompt_token_ids))


def test_score_of_a_batch_equals_each_alone(llm):
    a, b = llm.encode("The sea is calm tonight"), llm.encode("A bird sings")
    assert [all_bits(s) for s in llm.score([a, b])] == [all_bits(llm.score(a)),
                                                        all_bits(llm.score(b))]


def test_guided_choice_constrains_the_output(llm):
    params = invar.SamplingParams(guided_choice=["yes", "no"], max_tokens=8)
    out = llm.chat([{"role": "user", "content": "Is water wet?"}], params)
    assert out[0].outputs[0].text in ("yes", "no")


def test_guided_json_output_parses(llm):
    schema = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 12}},
              "required": ["city"], "additionalProperties": False}
    out = llm.chat([{"role": "user", "content": "Name a city as JSON."}],
                   invar.SamplingParams(guided_json=schema, max_tokens=40))
    assert set(json.loads(out[0].outputs[0].text)) == {"city"}


def test_chat_batch_of_conversations(llm):
    one = [{"role": "user", "content": "Say hi."}]
    two = [{"role": "user", "content": "Say bye."}]
    params = invar.SamplingParams(max_tokens=5)
    batch = llm.chat([one, two], params)
    assert [o.outputs[0].token_ids for o in batch] == \
        [llm.chat(one, params)[0].outputs[0].token_ids, llm.chat(two, params)[0].outputs[0].token_ids]


# Bad input: each a Python exception whose message says what was wrong.

def test_missing_model_file():
    with pytest.raises(FileNotFoundError, match="no model at"):
        invar.LLM("/nonexistent/model.gguf")


def test_model_file_that_is_not_a_model(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf file at all" * 10)
    with pytest.raises((ValueError, RuntimeError)):
        invar.LLM(str(bad))


def test_bad_engine_options(model_path):
    with pytest.raises(ValueError, match="kernels"):
        invar.LLM(model_path, kernels="quick")
    with pytest.raises(ValueError, match="cuda|cpu|device"):
        invar.LLM(model_path, device="tpu")


@pytest.mark.parametrize("params, field", [
    (invar.SamplingParams(max_tokens=-1), "max_tokens"),
    (invar.SamplingParams(temperature=-0.5), "temperature"),
    (invar.SamplingParams(temperature=7.0), "temperature"),
    (invar.SamplingParams(top_p=1.5), "top_p"),
    (invar.SamplingParams(logprobs=99), "logprobs"),
    (invar.SamplingParams(max_tokens=1 << 20), "context length"),
    (invar.SamplingParams(stop_token_ids=[-3]), "stop_token_ids"),
    (invar.SamplingParams(guided_regex="(unclosed"), "guided_regex"),
])
def test_bad_sampling_params(llm, params, field):
    with pytest.raises(ValueError, match=field):
        llm.generate("Hello", params)


def test_bad_prompts(llm):
    with pytest.raises(ValueError, match="empty"):
        llm.generate("", invar.SamplingParams(max_tokens=2))
    with pytest.raises(ValueError, match="vocabulary"):
        llm.generate([[1, 2, 10**9]], invar.SamplingParams(max_tokens=2))
    with pytest.raises(TypeError):
        llm.generate([3.5], invar.SamplingParams(max_tokens=2))
    with pytest.raises(ValueError, match="too long|context length"):
        llm.generate([[1] * (llm.max_model_len + 5)], invar.SamplingParams(max_tokens=2))


@pytest.mark.parametrize("messages, match", [
    ([{"role": "wizard", "content": "hi"}], "role"),
    ([{"content": "hi"}], "role"),
    ([{"role": "user"}], "content"),
    ([{"role": "user", "content": 5}], "content"),
    (["just a string"], "messages"),
])
def test_bad_messages(llm, messages, match):
    with pytest.raises(ValueError, match=match):
        llm.chat(messages, invar.SamplingParams(max_tokens=2))


def test_bad_score_input(llm):
    with pytest.raises(ValueError, match="empty|list of integer"):
        llm.score([])
    with pytest.raises(TypeError):
        llm.score(["a", "b"])
    with pytest.raises(ValueError, match="vocabulary"):
        llm.score([1, -5])


def test_the_engine_still_works_after_errors(llm):
    out = llm.generate("The capital of France is", invar.SamplingParams(max_tokens=3))
    assert len(out[0].outputs[0].token_ids) >= 1
