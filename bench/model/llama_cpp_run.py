"""One llama.cpp measurement for llama_cpp_compare.sh: loads a GGUF with llama-cpp-python,
prefills a prompt in one batch, then decodes greedily one token at a time, and prints one JSON
line: prompt tokens, prefill and decode tokens/s, peak RSS.

    python llama_cpp_run.py MODEL PROMPT_FILE --threads N --gen G --ctx C
"""
import argparse
import json
import resource
import time

import numpy as np
import llama_cpp
from llama_cpp import Llama


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("prompt_file")
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--gen", type=int, required=True)
    ap.add_argument("--ctx", type=int, default=4096)
    a = ap.parse_args()
    rss_python_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # interpreter + imports
    llm = Llama(model_path=a.model, n_threads=a.threads, n_threads_batch=a.threads, n_ctx=a.ctx,
                n_batch=512, n_ubatch=512, use_mmap=True, logits_all=False, verbose=False)
    with open(a.prompt_file, "rb") as f:
        prompt = f.read()
    # The GGUF's own tokenizer settings (SmolLM2: no BOS), as `invar generate` encodes it.
    tokens = llm.tokenize(prompt, add_bos=llm.metadata.get("tokenizer.ggml.add_bos_token") == "true",
                          special=False)
    t0 = time.perf_counter()
    llm.eval(tokens)
    t1 = time.perf_counter()
    n_vocab = llm.n_vocab()

    def last_logits():  # the C API's row of the last evaluated token (Llama.scores stays 0 here)
        return np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(n_vocab,))

    generated = []
    for _ in range(a.gen):
        nxt = int(np.argmax(last_logits()))  # greedy, ties to the lowest id
        generated.append(nxt)
        llm.eval([nxt])
    t2 = time.perf_counter()
    # invar's figure counts from the first token to the last: gen - 1 steps after the first.
    print(json.dumps({
        "prompt_tokens": len(tokens),
        "prefill_tok_s": len(tokens) / (t1 - t0),
        "decode_tok_s": a.gen / (t2 - t1),
        "peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "python_rss_kb": rss_python_kb,
        "text": llm.detokenize(generated).decode("utf-8", "replace"),
    }))


if __name__ == "__main__":
    main()
