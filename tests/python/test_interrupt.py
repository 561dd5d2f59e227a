"""Ctrl-C during a generate: KeyboardInterrupt at once, and the same LLM goes on with the bits a
fresh one gets (the interrupted requests cancelled, their KV blocks freed)."""

import os
import signal
import threading
import time

import pytest

import invar

from conftest import all_bits

PROMPTS = ["Once upon a time", "The capital of France is", "def fibonacci(n):"]


def outputs(llm, params):
    return [(o.outputs[0].token_ids, all_bits(o.outputs[0].logprobs))
            for o in llm.generate(PROMPTS, params)]


def test_ctrl_c_interrupts_a_generate_and_the_engine_goes_on(llm, model_path):
    # Thousands of tokens each: a minute or more here, unless interrupted.
    long = invar.SamplingParams(max_tokens=3000, ignore_eos=True)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # Python's own Ctrl-C
    sent = []

    def ctrl_c():
        sent.append(time.monotonic())
        os.kill(os.getpid(), signal.SIGINT)

    timer = threading.Timer(1.0, ctrl_c)
    try:
        start = time.monotonic()
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            llm.generate(PROMPTS, long)
        raised = time.monotonic()
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
    assert sent, "the generate ended before the signal was sent"
    # Promptly: the wait sees the signal within 20 ms, then the engine's next step cancels.
    assert raised - sent[0] < 2.0, f"KeyboardInterrupt came {raised - sent[0]:.2f} s late"
    assert raised - start < 10.0
    assert llm._engine.kv_blocks_used == 0  # cancelled requests gave their blocks back

    # The same LLM runs the next call, with the bits of a fresh engine (its prefix cache now
    # holds the interrupted prompts' blocks, which changes no bits).
    params = invar.SamplingParams(max_tokens=24, ignore_eos=True, logprobs=1)
    again = outputs(llm, params)
    fresh = outputs(invar.LLM(model_path), params)
    assert again == fresh
    assert all(len(ids) == 24 for ids, _ in again)
    assert llm._engine.kv_blocks_used == 0
