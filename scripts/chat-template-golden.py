#!/usr/bin/env python3
"""Renders the committed chat templates with Python jinja2 into the golden file
tests/data/tokenizer/chat_templates_expected.json, which tests/unit/chat_template_test.cpp
compares invar's renderer (minja) against, byte for byte.

jinja2 is set up the way Hugging Face transformers' apply_chat_template sets it up:
  * a sandboxed environment with trim_blocks, lstrip_blocks and the loop-controls extension;
  * raise_exception(message) raises TemplateError(message) (recorded as "raised": message;
    other failures, e.g. a TypeError on input the template does not handle, as "error");
  * strftime_now(format) formats the current local time (here a fixed one, NOW, so the golden
    file does not change with the day; the C++ test passes the same time);
  * tojson is json.dumps with ensure_ascii=False (and indent, separators, sort_keys);
  * the render gets messages, tools (None when not given), documents=None,
    add_generation_prompt, bos_token and eos_token, then any extra kwargs;
  * continue_final_message cuts the rendered text after the last message's text.

Templates (tests/data/tokenizer/templates/, verbatim as their models ship them; README.md there
says where each comes from) are data. Conversations cover: a user alone, system + user,
multi-turn with assistant turns, whitespace and non-ASCII text, reasoning (<think>) turns, roles
out of order (templates that raise), tools offered, a tool call and its result (arguments as an
object and as a JSON string), chat_template_kwargs, continue_final_message, and
add_generation_prompt on and off.

Usage: scripts/chat-template-golden   (makes the pinned venv, then runs this file)
"""
import datetime
import json
from pathlib import Path

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "tokenizer"
TEMPLATES = DATA / "templates"

# The local time strftime_now sees (the C++ test sets the same broken-down time).
NOW = datetime.datetime(2026, 11, 25, 14, 30, 5)

# bos_token and eos_token of each template's model, as its tokenizer writes them.
TOKENS = {
    "chatml": ("", "<|im_end|>"),
    "chatml_marker": ("", "<|im_end|>"),
    "qwen2": ("", "<|im_end|>"),
    "qwen2_5": ("", "<|im_end|>"),
    "qwen3": ("", "<|im_end|>"),
    "smollm2": ("<|im_start|>", "<|im_end|>"),
    "llama2": ("<s>", "</s>"),
    "zephyr": ("<s>", "</s>"),
    "llama3": ("<|begin_of_text|>", "<|eot_id|>"),
    "llama3_1": ("<|begin_of_text|>", "<|eot_id|>"),
    "llama3_2": ("<|begin_of_text|>", "<|eot_id|>"),
    "mistral_v0_3": ("<s>", "</s>"),
    "mistral_nemo": ("<s>", "</s>"),
    "mistral_small_3_2": ("<s>", "</s>"),
    "gemma2": ("<bos>", "<eos>"),
    "gemma3": ("<bos>", "<eos>"),
    "phi3_5": ("<s>", "<|endoftext|>"),
    "deepseek_r1": ("<\uff5cbegin\u2581of\u2581sentence\uff5c>", "<\uff5cend\u2581of\u2581sentence\uff5c>"),
    "deepseek_v3_1": ("<\uff5cbegin\u2581of\u2581sentence\uff5c>", "<\uff5cend\u2581of\u2581sentence\uff5c>"),
}

TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather",
        "description": "Current weather in a city (e.g. Zürich).",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "description": "The city's name"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["city"]}}},
    {"type": "function", "function": {
        "name": "get_time", "description": "The current time.",
        "parameters": {"type": "object", "properties": {}, "required": []}}},
]


def tool_call_turns(arguments, content):
    return [
        {"role": "user", "content": "What is the weather in Paris?"},
        {"role": "assistant", "content": content, "tool_calls": [
            {"id": "call12345", "type": "function",
             "function": {"name": "get_weather", "arguments": arguments}}]},
        {"role": "tool", "tool_call_id": "call12345", "name": "get_weather",
         "content": "{\"temperature\": 21, \"sky\": \"sunny\"}"},
        {"role": "assistant", "content": "It is 21 degrees and sunny in Paris."},
    ]


CONVERSATIONS = {
    "user": [{"role": "user", "content": "Hello!"}],
    "system_user": [{"role": "system", "content": "You are terse."},
                    {"role": "user", "content": "What is 2+2?"}],
    "multi_turn": [{"role": "user", "content": "  Hi there \n"},
                   {"role": "assistant", "content": "\nHello! How can I help?  "},
                   {"role": "user", "content": "Tell me a joke.\u3000"}],
    "system_multi_turn": [{"role": "system", "content": " Be brief. "},
                          {"role": "user", "content": "One"},
                          {"role": "assistant", "content": "Two"},
                          {"role": "user", "content": "Three 😀 三"}],
    "thinking": [{"role": "user", "content": "Solve x+1=2"},
                 {"role": "assistant", "content": "<think>\nx = 2 - 1\n</think>\n\nx = 1"},
                 {"role": "user", "content": "And x+2=5?"}],
    "thinking_last": [{"role": "user", "content": "Solve x+2=5"},
                      {"role": "assistant", "content": "<think>\n\nsubtract 2\n\n</think>\n\n\nx = 3"}],
    "not_alternating": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}],
    "assistant_first": [{"role": "assistant", "content": "I start."},
                        {"role": "user", "content": "Out of order"}],
    "tools_offered": [{"role": "user", "content": "Weather in Zürich?"}],
    # Arguments as an object (what Hugging Face documents) beside empty content; as a JSON
    # string (the OpenAI wire format) beside null content.
    "tool_call_object_args": tool_call_turns({"city": "Paris", "unit": "celsius"}, ""),
    "tool_call_string_args": tool_call_turns("{\"city\": \"Paris\", \"unit\": \"celsius\"}", None),
    "prefill": [{"role": "user", "content": "Write a haiku about the sea."},
                {"role": "assistant", "content": "Silent grey water, "}],
}

BASIC = ["user", "system_user", "multi_turn", "system_multi_turn", "thinking", "thinking_last",
         "not_alternating", "assistant_first"]

# Extra variables (chat_template_kwargs) per template.
KWARGS = {
    "qwen3": [{"enable_thinking": False}, {"enable_thinking": True}],
    "deepseek_v3_1": [{"thinking": True}, {"enable_thinking": True}],
    "llama3_1": [{"date_string": "01 Jan 2025"}],
    "llama3_2": [{"date_string": "01 Jan 2025"}],
}


class Raised(jinja2.exceptions.TemplateError):
    """What the template's raise_exception raises (transformers raises TemplateError)."""


def make_env():
    def raise_exception(message):
        raise Raised(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    def strftime_now(fmt):
        return NOW.strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def continue_final(rendered, messages):
    """transformers' continue_final_message: cut after the last message's text."""
    final = messages[-1]["content"]
    if final.strip() not in rendered:
        raise ValueError("the final message does not appear in the rendered chat")
    at = rendered.rindex(final.strip())
    if rendered[at:at + len(final.lstrip())] == final:
        return rendered[:at + len(final.lstrip())]
    return rendered[:at + len(final.strip())]


def render(tmpl, name, conv, tools, gen, kwargs, cont):
    bos, eos = TOKENS[name]
    messages = CONVERSATIONS[conv]
    case = {"template": name, "bos_token": bos, "eos_token": eos, "conversation": conv,
            "tools": tools is not None,
            "add_generation_prompt": gen, "continue_final_message": cont, "kwargs": kwargs}
    try:
        out = tmpl.render(messages=messages, tools=tools, documents=None,
                          add_generation_prompt=gen, bos_token=bos, eos_token=eos, **kwargs)
        if cont:
            out = continue_final(out, messages)
        case["expected"] = out
    except Raised as e:  # the template refuses the conversation, with its own message
        case["raised"] = str(e)
    except (jinja2.exceptions.TemplateError, TypeError, ValueError, KeyError, IndexError) as e:
        case["error"] = f"{type(e).__name__}: {e}"  # the template cannot render this input
    return case


def main():
    env = make_env()
    cases = []
    for name in sorted(TOKENS):
        tmpl = env.from_string((TEMPLATES / f"{name}.jinja").read_text(encoding="utf-8"))
        for conv in BASIC:
            for gen in (True, False):
                cases.append(render(tmpl, name, conv, None, gen, {}, False))
        cases.append(render(tmpl, name, "tools_offered", TOOLS, True, {}, False))
        for conv in ("tool_call_object_args", "tool_call_string_args"):
            for gen in (True, False):
                cases.append(render(tmpl, name, conv, TOOLS, gen, {}, False))
        cases.append(render(tmpl, name, "prefill", None, False, {}, True))
        for kwargs in KWARGS.get(name, []):
            for conv in ("user", "thinking"):
                cases.append(render(tmpl, name, conv, None, True, kwargs, False))
    out = {"now": NOW.isoformat(), "tools": TOOLS, "conversations": CONVERSATIONS,
           "cases": cases}
    path = DATA / "chat_templates_expected.json"
    with open(path, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")
    raised = sum("raised" in c for c in cases)
    errors = sum("error" in c for c in cases)
    print(f"{path.relative_to(ROOT)}: {len(cases)} cases ({raised} raise_exception, {errors} "
          f"other errors), {len(TOKENS)} templates")


if __name__ == "__main__":
    main()
