"""invar: batch-invariant LLM inference, in-process.

    import invar
    llm = invar.LLM("SmolLM2-135M-Instruct.Q4_1.gguf")
    out = llm.generate(["The capital of France is"], invar.SamplingParams(max_tokens=16))
    print(out[0].outputs[0].text)

A request gets the same tokens and logprob bits as the same request sent to `invar serve` with
the same model and kernels, whatever else is batched with it.
"""

from invar.llm import LLM, CompletionOutput, RequestOutput
from invar.sampling import SamplingParams

__all__ = ["LLM", "SamplingParams", "RequestOutput", "CompletionOutput"]
