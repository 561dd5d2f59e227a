"""SamplingParams: how a request is sampled, with the fields `invar serve` accepts.

Every field left at None takes the server's default (temperature 0: greedy; max_tokens 16 for a
prompt, the rest of the context for a chat), so a Python request and an HTTP request with the same
fields are the same request, with the same bits. Values are checked by the server's own parser: a
bad one raises ValueError naming the field.
"""

from dataclasses import dataclass, fields
from typing import Dict, List, Optional, Union


@dataclass
class SamplingParams:
    temperature: Optional[float] = None  # 0: greedy (the default), up to 2
    top_p: Optional[float] = None
    top_k: Optional[int] = None  # 0 or -1: off
    min_p: Optional[float] = None
    max_tokens: Optional[int] = None
    min_tokens: Optional[int] = None
    seed: Optional[int] = None  # with a temperature: the same seed, the same tokens
    n: Optional[int] = None  # outputs per prompt; output i draws with seed + i
    stop: Optional[Union[str, List[str]]] = None
    stop_token_ids: Optional[List[int]] = None
    include_stop_str_in_output: Optional[bool] = None
    ignore_eos: Optional[bool] = None
    # The chosen token's logprob is always returned; logprobs = k adds the k best alternatives.
    logprobs: Optional[int] = None
    prompt_logprobs: Optional[int] = None  # the prompt tokens' logprobs (the first has none)
    presence_penalty: Optional[float] = None
    frequency_penalty: Optional[float] = None
    repetition_penalty: Optional[float] = None
    logit_bias: Optional[Dict[int, float]] = None
    skip_special_tokens: Optional[bool] = None
    # Structured output (vLLM's fields): at most one.
    guided_json: Optional[Union[str, dict]] = None
    guided_regex: Optional[str] = None
    guided_choice: Optional[List[str]] = None
    guided_grammar: Optional[str] = None

    def request_fields(self, chat: bool) -> dict:
        """The request body fields of /v1/completions or /v1/chat/completions."""
        body = {f.name: getattr(self, f.name) for f in fields(self)
                if getattr(self, f.name) is not None}
        top = body.pop("logprobs", 0)
        if chat:
            body["logprobs"] = True
            body["top_logprobs"] = top
        else:
            body["logprobs"] = top
        if "logit_bias" in body and isinstance(body["logit_bias"], dict):
            body["logit_bias"] = {str(k): v for k, v in body["logit_bias"].items()}
        return body
