"""invar.LLM: an engine in this process, with the offline API of vLLM's LLM class.

The engine is the one `invar serve` runs (invar._core); requests are written as the server's
request bodies and parsed by the server's own code, so they get the server's bits and errors.
"""

import json
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Union

from invar import _core
from invar.sampling import SamplingParams

Prompt = Union[str, Sequence[int]]
Message = Dict[str, object]


@dataclass
class CompletionOutput:
    index: int
    text: str
    token_ids: List[int]
    logprobs: List[float]  # per generated token: the chosen token's logprob
    # per generated token (SamplingParams.logprobs > 0): the best alternatives, most likely first
    top_logprobs: Optional[List[Dict[int, float]]]
    finish_reason: str  # "stop" or "length"


@dataclass
class RequestOutput:
    prompt: Optional[Union[str, List[Message]]]
    prompt_token_ids: List[int]
    # SamplingParams.prompt_logprobs: per prompt token, its logprob (None for the first)
    prompt_logprobs: Optional[List[Optional[float]]]
    outputs: List[CompletionOutput] = field(default_factory=list)


def _is_token_ids(x) -> bool:
    return isinstance(x, (list, tuple)) and all(isinstance(t, int) and not isinstance(t, bool)
                                                for t in x)


def _to_output(prompt, choices) -> RequestOutput:
    first = choices[0]
    out = RequestOutput(prompt=prompt, prompt_token_ids=list(first.prompt_token_ids),
                        prompt_logprobs=list(first.prompt_logprobs) or None)
    for i, c in enumerate(choices):
        top = [dict(t) for t in c.top_logprobs] or None
        out.outputs.append(CompletionOutput(index=i, text=c.text, token_ids=list(c.token_ids),
                                            logprobs=list(c.logprobs), top_logprobs=top,
                                            finish_reason=c.finish_reason))
    return out


class LLM:
    """A model loaded in this process.

    model: a GGUF file or a Hugging Face directory (config.json, *.safetensors, tokenizer.json),
    as `invar generate --model` takes. kernels="fast" is the batch-dependent baseline, a negative
    control only. threads: CPU threads (None: all cores). max_model_len: prompt + output tokens
    per request (None: 4096, or the model's own context if shorter).
    """

    def __init__(self, model: str, device: str = "cpu", kernels: str = "invariant",
                 threads: Optional[int] = None, max_model_len: Optional[int] = None,
                 kv_cache_dtype: str = "f16", weight_dtype: Optional[str] = None,
                 max_num_seqs: Optional[int] = None,
                 max_num_batched_tokens: Optional[int] = None,
                 enable_prefix_caching: bool = True):
        model = os.fspath(model)
        if not os.path.exists(model):
            raise FileNotFoundError(f"no model at {model!r}: give a GGUF file or a Hugging Face "
                                    "directory")
        self._engine = _core.Engine(model, device, kernels, threads or 0, max_model_len or 0,
                                    kv_cache_dtype, weight_dtype or "", max_num_seqs or 0,
                                    max_num_batched_tokens or 0, enable_prefix_caching)

    @property
    def max_model_len(self) -> int:
        return self._engine.max_model_len

    @property
    def fingerprint(self) -> str:
        """Model, engine build and kernel mode: equal fingerprints promise equal bits."""
        return self._engine.fingerprint

    def encode(self, text: str, add_special_tokens: bool = True) -> List[int]:
        """Token ids of `text` as a completion prompt gets them (BOS when the model adds one)."""
        return list(self._engine.encode(text, add_special_tokens))

    def decode(self, token_ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return self._engine.decode(list(token_ids), skip_special_tokens)

    def generate(self, prompts: Union[Prompt, Sequence[Prompt]],
                 sampling_params: Optional[SamplingParams] = None) -> List[RequestOutput]:
        """Continues each prompt (text, or a list of token ids); all run batched at once.
        Ctrl-C raises KeyboardInterrupt at once, with every request of the call cancelled."""
        if isinstance(prompts, str) or _is_token_ids(prompts) and len(prompts) > 0:
            prompts = [prompts]
        prompts = list(prompts)
        for p in prompts:
            if not isinstance(p, str) and not _is_token_ids(p):
                raise TypeError("a prompt is a string or a list of token ids, not "
                                f"{type(p).__name__}")
        fields = (sampling_params or SamplingParams()).request_fields(chat=False)
        bodies = [json.dumps({**fields, "prompt": p if isinstance(p, str) else list(p)})
                  for p in prompts]
        return [_to_output(p, c) for p, c in zip(prompts, self._engine.run(False, bodies))]

    def chat(self, messages: Union[List[Message], List[List[Message]]],
             sampling_params: Optional[SamplingParams] = None, *,
             add_generation_prompt: bool = True, continue_final_message: bool = False,
             chat_template_kwargs: Optional[dict] = None,
             tools: Optional[List[dict]] = None) -> List[RequestOutput]:
        """Answers a conversation ([{"role", "content"}, ...]) or a list of them, through the
        model's chat template as /v1/chat/completions does."""
        if not isinstance(messages, (list, tuple)) or not messages:
            raise TypeError("messages is a non-empty list of {role, content} dicts, or a list "
                            "of such lists")
        conversations = messages if isinstance(messages[0], (list, tuple)) else [messages]
        fields = (sampling_params or SamplingParams()).request_fields(chat=True)
        fields["add_generation_prompt"] = add_generation_prompt
        fields["continue_final_message"] = continue_final_message
        if chat_template_kwargs is not None:
            fields["chat_template_kwargs"] = chat_template_kwargs
        if tools is not None:
            fields["tools"] = tools
        bodies = [json.dumps({**fields, "messages": list(c)}) for c in conversations]
        return [_to_output(list(c), ch)
                for c, ch in zip(conversations, self._engine.run(True, bodies))]

    def score(self, token_ids: Union[Sequence[int], Sequence[Sequence[int]]]
              ) -> Union[List[Optional[float]], List[List[Optional[float]]]]:
        """Per token, its logprob given the tokens before it (None for the first), computed by
        the prefill as the server's prompt_logprobs: the bits each token got if it was sampled.
        A list of token-id lists is scored as one batch."""
        batched = isinstance(token_ids, (list, tuple)) and len(token_ids) > 0 and \
            all(isinstance(t, (list, tuple)) for t in token_ids)
        sequences = list(token_ids) if batched else [token_ids]
        for s in sequences:
            if not _is_token_ids(s):
                raise TypeError("score takes a list of token ids, or a list of such lists")
            if len(s) == 0:
                raise ValueError("score needs at least one token id; got an empty list")
        bodies = [json.dumps({"prompt": list(s), "max_tokens": 0, "prompt_logprobs": 0})
                  for s in sequences]
        scores = [list(c[0].prompt_logprobs) for c in self._engine.run(False, bodies)]
        return scores if batched else scores[0]
