"""Chat templates through the server: the model's own template by default, `--chat-template FILE`
instead, `chat_template_kwargs` reaching the template, `continue_final_message`, and a template's
raise_exception as a 400 that carries the template's message."""

import os

import openai
import pytest

from conftest import MODEL_NAME, InvarServer

TEMPLATES = os.path.join(os.path.dirname(__file__), "..", "data", "tokenizer", "templates")
HI = [{"role": "user", "content": "Hi"}]


def prompt_tokens(client, messages, **extra_body):
    r = client.chat.completions.create(model=MODEL_NAME, messages=messages, max_tokens=1,
                                       temperature=0, extra_body=extra_body or None)
    return r.usage.prompt_tokens


def make_client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0,
                         timeout=120)


@pytest.fixture(scope="module")
def qwen3_client():
    """SmolLM2 served with Qwen3's template (both ChatML): --chat-template replaces SmolLM2's."""
    s = InvarServer("--chat-template", os.path.join(TEMPLATES, "qwen3.jinja"))
    yield make_client(s)
    assert s.stop() == 0


def test_chat_template_kwargs(client, qwen3_client):
    # SmolLM2's own template adds its default system prompt; Qwen3's does not.
    assert prompt_tokens(client, HI) > prompt_tokens(qwen3_client, HI) + 10
    plain = prompt_tokens(qwen3_client, HI)
    # enable_thinking=false makes Qwen3's template write an empty <think></think> block.
    off = prompt_tokens(qwen3_client, HI, chat_template_kwargs={"enable_thinking": False})
    assert off > plain
    assert prompt_tokens(qwen3_client, HI, chat_template_kwargs={"enable_thinking": True}) == plain
    # The model's own template does not read the variable: no change there.
    assert (prompt_tokens(client, HI, chat_template_kwargs={"enable_thinking": False})
            == prompt_tokens(client, HI))
    with pytest.raises(openai.BadRequestError) as e:
        prompt_tokens(qwen3_client, HI, chat_template_kwargs="enable_thinking")
    assert e.value.body["param"] == "chat_template_kwargs"


def test_continue_final_message(client):
    prefilled = HI + [{"role": "assistant", "content": "The capital of France is"}]
    closed = prompt_tokens(client, prefilled, add_generation_prompt=False)
    # Continuing the last message leaves out what the template writes after it (<|im_end|>\n).
    cont = prompt_tokens(client, prefilled, add_generation_prompt=False,
                         continue_final_message=True)
    assert cont == closed - 2
    with pytest.raises(openai.BadRequestError) as e:
        prompt_tokens(client, prefilled, continue_final_message=True)
    assert e.value.body["param"] == "continue_final_message"


def test_template_raise_is_400():
    s = InvarServer("--chat-template", os.path.join(TEMPLATES, "gemma3.jinja"))
    try:
        c = make_client(s)
        with pytest.raises(openai.BadRequestError) as e:
            prompt_tokens(c, [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}])
        assert "Conversation roles must alternate" in e.value.body["message"]
        assert e.value.body["param"] == "messages"
        assert prompt_tokens(c, HI) > 0  # a conversation the template accepts still works
    finally:
        assert s.stop() == 0


def generate(*args):
    """`invar generate ... --max-tokens 1`: (exit status, stderr)."""
    import subprocess
    out = subprocess.run([os.environ["INVAR_BIN"], "generate", "--max-tokens", "1", *args],
                         capture_output=True, text=True, timeout=300)
    return out.returncode, out.stderr


def generated_prompt_tokens(*args):
    import re
    rc, err = generate("--model", os.environ["INVAR_MODEL"], "--prompt", "Hi", "--chat", *args)
    assert rc == 0, err
    return int(re.search(r"\[(\d+) prompt tokens", err).group(1))


def test_generate_chat_template_options(tmp_path):
    qwen3 = os.path.join(TEMPLATES, "qwen3.jinja")
    plain = generated_prompt_tokens("--chat-template", qwen3)
    assert generated_prompt_tokens() > plain + 10  # SmolLM2's own adds a system prompt
    assert generated_prompt_tokens("--chat-template", qwen3, "--chat-template-kwargs",
                                   '{"enable_thinking": false}') > plain
    bad = tmp_path / "bad.jinja"
    bad.write_text("{% for m in messages %}")
    rc, err = generate("--model", os.environ["INVAR_MODEL"], "--prompt", "Hi", "--chat",
                       "--chat-template", str(bad))
    assert rc == 1 and "not valid Jinja" in err and str(bad) in err
    # A model without any template: --chat says so and how to pass one.
    tiny = os.path.join(os.path.dirname(__file__), "..", "data", "tiny-qwen3")
    rc, err = generate("--model", tiny, "--random-weights", "1", "--prompt", "Hi", "--chat")
    assert rc == 1 and "no chat template" in err and "--chat-template FILE" in err
