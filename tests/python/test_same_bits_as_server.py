"""invar.LLM against `invar serve` with the same model: the same request gives the same tokens,
text and logprob bits (issue 13: "same bits as the server"), for a prompt, a token-id prompt, a
chat and a score; and .score gives every token the logprob bits it was sampled with.
"""

import invar

from conftest import MODEL_NAME, all_bits, bits

PROMPT = ("The old lighthouse keeper climbed the stairs every night, and on the last night of "
          "the year he found")
SEED = 20261207
TOP = 2


def served_completion(client, prompt):
    r = client.completions.create(model=MODEL_NAME, prompt=prompt, max_tokens=32,
                                  temperature=0.8, seed=SEED, logprobs=TOP,
                                  extra_body={"ignore_eos": True, "return_token_ids": True})
    c = r.choices[0]
    return {"prompt_ids": c.model_extra["prompt_token_ids"], "ids": c.model_extra["token_ids"],
            "text": c.text, "logprobs": all_bits(c.logprobs.token_logprobs),
            "top": [sorted(all_bits(t.values())) for t in c.logprobs.top_logprobs],
            "finish": c.finish_reason}


def local_completion(llm, prompt):
    params = invar.SamplingParams(temperature=0.8, seed=SEED, max_tokens=32, logprobs=TOP,
                                  ignore_eos=True)
    out = llm.generate(prompt, params)[0]
    o = out.outputs[0]
    return {"prompt_ids": out.prompt_token_ids, "ids": o.token_ids, "text": o.text,
            "logprobs": all_bits(o.logprobs),
            "top": [sorted(all_bits(t.values())) for t in o.top_logprobs],
            "finish": o.finish_reason}


def test_generate_gives_the_server_bits(llm, client):
    served = served_completion(client, PROMPT)
    local = local_completion(llm, PROMPT)
    assert len(local["ids"]) == 32 and local["finish"] == "length"
    assert local == served


def test_generate_from_token_ids_gives_the_server_bits(llm, client):
    ids = llm.encode(PROMPT)
    assert ids == served_completion(client, PROMPT)["prompt_ids"]
    assert local_completion(llm, ids) == served_completion(client, ids)


def test_chat_gives_the_server_bits(llm, client):
    messages = [{"role": "system", "content": "You are terse."},
                {"role": "user", "content": "Name three rivers of Europe."}]
    r = client.chat.completions.create(model=MODEL_NAME, messages=messages, max_tokens=24,
                                       temperature=0.8, seed=SEED, logprobs=True,
                                       extra_body={"return_token_ids": True})
    served = r.choices[0]
    params = invar.SamplingParams(temperature=0.8, seed=SEED, max_tokens=24)
    out = llm.chat(messages, params)[0]
    local = out.outputs[0]
    assert out.prompt_token_ids == r.model_extra["prompt_token_ids"]  # chat: on the response
    assert local.token_ids == served.model_extra["token_ids"]
    assert local.text == served.message.content
    assert all_bits(local.logprobs) == all_bits(t.logprob for t in served.logprobs.content)
    assert local.finish_reason == served.finish_reason


def test_score_gives_the_server_prompt_logprobs_and_the_sampled_bits(llm, client):
    sampled = local_completion(llm, PROMPT)
    tokens = sampled["prompt_ids"] + sampled["ids"]
    scores = llm.score(tokens)
    assert len(scores) == len(tokens) and scores[0] is None

    r = client.completions.create(model=MODEL_NAME, prompt=tokens, max_tokens=0,
                                  extra_body={"prompt_logprobs": 0})
    served = r.choices[0].model_extra["prompt_logprobs"]
    assert served[0] is None
    served_bits = [bits(position[str(t)]["logprob"]) for t, position in zip(tokens[1:], served[1:])]
    assert all_bits(scores[1:]) == served_bits

    # Scored by a prefill, sampled by decode steps: the same bits.
    p = len(sampled["prompt_ids"])
    assert all_bits(scores[p:]) == sampled["logprobs"]


def test_negative_control_fast_kernels_score_other_bits(fast_llm):
    """With the fast kernels a decode step (one row: K summed in slices) and the scoring prefill
    (many rows: the fixed order) give the same token other bits."""
    sampled = local_completion(fast_llm, PROMPT)
    scores = fast_llm.score(sampled["prompt_ids"] + sampled["ids"])
    p = len(sampled["prompt_ids"])
    differ = sum(a != b for a, b in zip(all_bits(scores[p:]), sampled["logprobs"]))
    print(f"fast kernels: {differ} of {len(sampled['ids'])} scored tokens differ")
    assert differ > 0, "the comparison cannot see a batch-dependent kernel"
