#!/usr/bin/env python3
"""Converts the tiny MoE checkpoints (tests/data/tiny-qwen3-moe, tiny-mixtral, tiny-qwen2-moe) to
GGUF files
laid out as llama.cpp's converter lays out MoE models, written with the `gguf` Python package:

  tiny-qwen3-moe/model-<type>.gguf   arch qwen3moe: qwen3moe.expert_count,
                                     expert_used_count, expert_feed_forward_length; the
                                     dense layer (mlp_only_layers) keeps ffn_gate/up/down
  tiny-mixtral/model-<type>.gguf     arch llama with llama.expert_count / expert_used_count,
                                     q/k rows permuted as for every llama-arch file
  tiny-qwen2-moe/model-<type>.gguf   arch qwen2moe: q/k/v biases, the shared expert
                                     ffn_{gate,up,down}_shexp and its gate ffn_gate_inp_shexp
                                     [H] (F32), expert_shared_feed_forward_length

Each sparse layer has the router `blk.N.ffn_gate_inp.weight` [E, H] (kept F32, as llama.cpp
keeps it) and the experts stacked per projection: `ffn_gate_exps` and `ffn_up_exps` [E, I_e, H],
`ffn_down_exps` [E, H, I_e] (outermost first). <type> is f32, f16, bf16 or q8_0 (the matrices;
norms stay F32). tests/unit/moe_gguf_test.cpp loads the committed q8_0 files; the other types
are written by that test itself from the safetensors weights.

    python3 -m venv build/kquant-venv
    build/kquant-venv/bin/pip install gguf==0.19.0 numpy==2.4.6
    build/kquant-venv/bin/python scripts/make-moe-gguf.py [q8_0 ...]

The output is a pure function of the checkpoints: rerunning rewrites identical files.
"""
import json
import os
import struct
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
DATA = os.path.join(ROOT, "tests", "data")
TYPES = {"f32": Q.F32, "f16": Q.F16, "bf16": Q.BF16, "q8_0": Q.Q8_0}


def read_safetensors(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", (name, info["dtype"])
        a, b = info["data_offsets"]
        out[name] = np.frombuffer(data[a:b], dtype="<f4").reshape(info["shape"])
    return out


def permute_qk(w, heads):
    # llama.cpp's converter reorders each head's rows from (first half, second half) to
    # interleaved pairs for llama-arch files; invar reads them with the interleaved rope.
    rows = w.shape[0]
    return w.reshape(heads, 2, rows // heads // 2, -1).swapaxes(1, 2).reshape(w.shape)


def add_matrix(w, name, x, qtype):
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.shape[-1] % gguf.GGML_QUANT_SIZES[qtype][0] != 0:
        qtype = Q.F16  # rows that are not whole blocks (tiny-qwen2-moe's shared down, 48), as
        # llama.cpp's quantizer falls back for them
    if qtype == Q.F32:
        w.add_tensor(name, x)
    else:
        w.add_tensor(name, gguf.quants.quantize(x, qtype), raw_dtype=qtype)


def convert(model, qtype_name):
    src = os.path.join(DATA, model)
    with open(os.path.join(src, "config.json")) as f:
        cfg = json.load(f)
    t = read_safetensors(os.path.join(src, "model.safetensors"))
    qtype = TYPES[qtype_name]
    mixtral = cfg["architectures"][0] == "MixtralForCausalLM"
    qwen2 = cfg["architectures"][0] == "Qwen2MoeForCausalLM"
    arch = "llama" if mixtral else "qwen2moe" if qwen2 else "qwen3moe"
    path = os.path.join(src, f"model-{qtype_name}.gguf")
    w = gguf.GGUFWriter(path, arch)
    layers, heads, kv_heads = (cfg["num_hidden_layers"], cfg["num_attention_heads"],
                               cfg["num_key_value_heads"])
    w.add_block_count(layers)
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_rope_freq_base(float(cfg["rope_theta"]))
    w.add_layer_norm_rms_eps(float(cfg["rms_norm_eps"]))
    w.add_vocab_size(cfg["vocab_size"])
    if "head_dim" in cfg:
        w.add_key_length(cfg["head_dim"])
        w.add_value_length(cfg["head_dim"])
    if mixtral:
        w.add_expert_count(cfg["num_local_experts"])
        w.add_expert_used_count(cfg["num_experts_per_tok"])
        experts, dense = cfg["num_local_experts"], set()
    else:
        w.add_expert_count(cfg["num_experts"])
        w.add_expert_used_count(cfg["num_experts_per_tok"])
        w.add_expert_feed_forward_length(cfg["moe_intermediate_size"])
        if qwen2:
            w.add_expert_shared_feed_forward_length(cfg["shared_expert_intermediate_size"])
        else:
            w.add_expert_weights_norm(bool(cfg["norm_topk_prob"]))
        experts, dense = cfg["num_experts"], set(cfg.get("mlp_only_layers") or [])

    add_matrix(w, "token_embd.weight", t["model.embed_tokens.weight"], qtype)
    for l in range(layers):
        p, b = f"model.layers.{l}.", f"blk.{l}."
        q, k = t[p + "self_attn.q_proj.weight"], t[p + "self_attn.k_proj.weight"]
        if mixtral:
            q, k = permute_qk(q, heads), permute_qk(k, kv_heads)
        w.add_tensor(b + "attn_norm.weight", t[p + "input_layernorm.weight"])
        add_matrix(w, b + "attn_q.weight", q, qtype)
        add_matrix(w, b + "attn_k.weight", k, qtype)
        add_matrix(w, b + "attn_v.weight", t[p + "self_attn.v_proj.weight"], qtype)
        add_matrix(w, b + "attn_output.weight", t[p + "self_attn.o_proj.weight"], qtype)
        for n in ("q", "k", "v") if qwen2 else ():
            w.add_tensor(f"{b}attn_{n}.bias", t[f"{p}self_attn.{n}_proj.bias"])
        if not mixtral and not qwen2:
            w.add_tensor(b + "attn_q_norm.weight", t[p + "self_attn.q_norm.weight"])
            w.add_tensor(b + "attn_k_norm.weight", t[p + "self_attn.k_norm.weight"])
        w.add_tensor(b + "ffn_norm.weight", t[p + "post_attention_layernorm.weight"])
        if l in dense:
            for ours, theirs in (("gate", "gate"), ("up", "up"), ("down", "down")):
                add_matrix(w, f"{b}ffn_{ours}.weight", t[f"{p}mlp.{theirs}_proj.weight"], qtype)
            continue
        m = p + ("block_sparse_moe." if mixtral else "mlp.")
        names = {"gate": "w1", "up": "w3", "down": "w2"} if mixtral else \
            {"gate": "gate_proj", "up": "up_proj", "down": "down_proj"}
        w.add_tensor(b + "ffn_gate_inp.weight", t[m + "gate.weight"])
        for proj, theirs in names.items():
            stacked = np.stack([t[f"{m}experts.{e}.{theirs}.weight"] for e in range(experts)])
            add_matrix(w, f"{b}ffn_{proj}_exps.weight", stacked, qtype)
        if qwen2:
            for proj in ("gate", "up", "down"):
                add_matrix(w, f"{b}ffn_{proj}_shexp.weight",
                           t[f"{m}shared_expert.{proj}_proj.weight"], qtype)
            w.add_tensor(b + "ffn_gate_inp_shexp.weight", t[m + "shared_expert_gate.weight"].reshape(-1))
    w.add_tensor("output_norm.weight", t["model.norm.weight"])
    if not cfg.get("tie_word_embeddings", False):
        add_matrix(w, "output.weight", t["lm_head.weight"], qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


def main():
    types = sys.argv[1:] or ["q8_0"]
    for qtype_name in types:
        if qtype_name not in TYPES:
            sys.exit(f"unknown type {qtype_name} (expected one of {', '.join(TYPES)})")
        for model in ("tiny-qwen3-moe", "tiny-mixtral", "tiny-qwen2-moe"):
            convert(model, qtype_name)


if __name__ == "__main__":
    main()
