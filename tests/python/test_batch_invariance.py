"""A prompt generated alone and inside a batch of other prompts gets the same tokens and logprob
bits (the engine's scheduler batches one generate() call as it batches a server's clients). The
fast kernels must fail the same comparison (R8): alone, every decode step of the prompt has one
row, and the CPU's fast GEMM sums K in slices for steps of up to 8 rows; in a batch of 12 the
steps hold more rows and take the fixed order.
"""

import pytest

import invar

from conftest import all_bits

TARGET = "Write a short story about a lighthouse keeper who finds a message in a bottle."
OTHERS = [" ".join(["river", "mountain", "quiet", "number", "garden", "violet", "seven",
                    "engine", "paper", "silver"][: 1 + (i * 3) % 10]) * (1 + i % 4)
          for i in range(11)]
PARAMS = invar.SamplingParams(temperature=0.8, seed=7, max_tokens=24, ignore_eos=True,
                              logprobs=2)


def outcome(out):
    o = out.outputs[0]
    return (o.token_ids, o.text, all_bits(o.logprobs),
            [sorted(all_bits(t.values())) for t in o.top_logprobs])


def differing_tokens(a, b):
    return sum(x != y for x, y in zip(a[2], b[2]))


def alone_and_batched(llm):
    alone = outcome(llm.generate(TARGET, PARAMS)[0])
    batch = llm.generate(OTHERS[:5] + [TARGET] + OTHERS[5:], PARAMS)
    assert len(batch) == 12
    return alone, outcome(batch[5])


def test_generate_alone_equals_generate_in_a_batch(llm):
    alone, batched = alone_and_batched(llm)
    assert len(alone[0]) == 24
    assert alone == batched


def test_batch_keeps_each_prompt_in_its_place(llm):
    outs = llm.generate(OTHERS[:3], invar.SamplingParams(max_tokens=4))
    assert [o.prompt for o in outs] == OTHERS[:3]
    for o, prompt in zip(outs, OTHERS[:3]):
        assert o.prompt_token_ids == llm.encode(prompt)


def test_negative_control_fast_kernels_differ(fast_llm):
    alone, batched = alone_and_batched(fast_llm)
    differ = differing_tokens(alone, batched)
    print(f"fast kernels: {differ} of {len(alone[2])} logprobs differ alone vs in a batch")
    assert differ > 0, "the comparison cannot see a batch-dependent kernel"
