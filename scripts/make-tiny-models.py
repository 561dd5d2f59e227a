#!/usr/bin/env python3
"""Writes the tiny seeded Hugging Face checkpoints used as golden inputs by the tests.

    python3 scripts/make-tiny-models.py [tests/data]

  tiny-llama/          LlamaForCausalLM: hidden 64, 2 layers, 4 heads, 2 kv heads,
                       intermediate 128, vocab 256, llama3 rope scaling, untied lm_head
  tiny-qwen3/          Qwen3ForCausalLM: same sizes, head_dim 32, q/k norm, tied embeddings
  tiny-llama-sharded/  tiny-llama split into two shards with model.safetensors.index.json
  tiny-mistral/        MistralForCausalLM: Llama sizes, sliding_window 8 (the 24-token golden
                       sequence crosses it), rope theta 10000, untied lm_head
  tiny-phi3/           Phi3ForCausalLM: Llama sizes, fused qkv_proj and gate_up_proj, partial
                       rotary 0.5 (8 of 16 dims), longrope (short factors below position 32,
                       the golden sequence's range; attention factor from 128 / 32)
  tiny-gemma2/         Gemma2ForCausalLM: hidden 48 (embedding scale sqrt(48), not a round
                       number), head_dim 32, query_pre_attn_scalar 24, four norms per layer
                       stored as w (applied as 1 + w), gelu_pytorch_tanh, attention soft-cap 5
                       and final soft-cap 30 (both bite), sliding window 8 on layer 0
                       (layer 1 full), tied embeddings
  tiny-gemma3/         Gemma3ForCausalLM (gemma3_text): Gemma 2's sizes, 3 layers (sliding,
                       full, sliding), q/k norms (1 + w), no attention soft-cap, local rope base
                       10000 and global 1e6 with linear scaling 2 on the full layer
  tiny-qwen3-yarn/     tiny-qwen3 with YaRN rope scaling (factor 4, original context 256, beta
                       32/1: the ramp runs over frequencies 0..7 of 16), rope theta 10000
  tiny-qwen3-moe/      Qwen3MoeForCausalLM: Qwen3 sizes, 3 layers (layer 1 dense through
                       mlp_only_layers), 8 experts of intermediate 32, top-2, norm_topk_prob,
                       untied lm_head; Hub tensor names (mlp.gate, mlp.experts.E.*_proj)
  tiny-mixtral/        MixtralForCausalLM: Llama sizes, 8 experts of intermediate 128, top-2,
                       no sliding window; Hub tensor names (block_sparse_moe.gate,
                       block_sparse_moe.experts.E.w1/w3/w2)
  tiny-qwen2-moe/      Qwen2MoeForCausalLM: tiny-qwen3-moe's sizes without q/k norms, with q/k/v
                       biases, 8 experts of intermediate 32 (top-2, norm_topk_prob false) plus
                       a shared expert of intermediate 48 scaled by sigmoid(shared_expert_gate);
                       layer 1 dense (mlp_only_layers)
  tiny-qwen3-fp8/      tiny-qwen3's config and weights with its attention and MLP matrices
                       quantized to F8_E4M3 in blocks of 32x32 (weight_scale_inv, F32), as
                       Qwen3-*-FP8 checkpoints store them (quantization_config "fp8"); the
                       embedding and norms stay F32

Each directory gets config.json, f32 safetensors (F8_E4M3 matrices for tiny-qwen3-fp8) and
tensor_checks.json (shape, float64 sum
and first values of every tensor, for the loader tests). numpy only: the safetensors bytes
are written by hand (8-byte little-endian header length, JSON header, raw data). The output
is a pure function of the seeds, so rerunning rewrites identical files.
"""
import json
import os
import struct
import sys

import numpy as np


def write_safetensors(path, tensors):
    """tensors: list of (name, array), written in that order: float32 arrays as F32, uint8
    arrays as F8_E4M3 codes."""
    header = {"__metadata__": {"format": "pt"}}
    offset = 0
    blobs = []
    for name, arr in tensors:
        fp8 = arr.dtype == np.uint8
        data = arr.tobytes() if fp8 else np.ascontiguousarray(arr, dtype="<f4").tobytes()
        header[name] = {"dtype": "F8_E4M3" if fp8 else "F32", "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # keep the data 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def make_weights(cfg, seed):
    rng = np.random.default_rng(seed)
    h = cfg["hidden_size"]
    inter = cfg["intermediate_size"]
    v = cfg["vocab_size"]
    d = cfg.get("head_dim", h // cfg["num_attention_heads"])
    q = cfg["num_attention_heads"] * d
    kv = cfg["num_key_value_heads"] * d
    arch = cfg["architectures"][0]
    qk_norm = arch in ("Qwen3ForCausalLM", "Gemma3ForCausalLM", "Qwen3MoeForCausalLM")
    fused = arch == "Phi3ForCausalLM"  # qkv_proj, gate_up_proj
    # Gemma stores RMSNorm weights as w and scales by 1 + w, and norms both sides of each block.
    gemma = arch in ("Gemma2ForCausalLM", "Gemma3ForCausalLM")
    qkv_bias = arch == "Qwen2MoeForCausalLM"

    def mat(rows, cols):
        return (rng.standard_normal((rows, cols)) / np.sqrt(cols)).astype(np.float32)

    def norm(n):
        return ((0.0 if gemma else 1.0) + 0.1 * rng.standard_normal(n)).astype(np.float32)

    t = [("model.embed_tokens.weight", rng.standard_normal((v, h)).astype(np.float32))]
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        t.append((p + "input_layernorm.weight", norm(h)))
        if fused:
            t.append((p + "self_attn.qkv_proj.weight", mat(q + 2 * kv, h)))
        else:
            t += [(p + "self_attn.q_proj.weight", mat(q, h)),
                  (p + "self_attn.k_proj.weight", mat(kv, h)),
                  (p + "self_attn.v_proj.weight", mat(kv, h))]
        if qkv_bias:
            t += [(p + f"self_attn.{n}_proj.bias", (0.1 * rng.standard_normal(r)).astype(np.float32))
                  for n, r in (("q", q), ("k", kv), ("v", kv))]
        t.append((p + "self_attn.o_proj.weight", mat(h, q)))
        if qk_norm:
            t += [(p + "self_attn.q_norm.weight", norm(d)),
                  (p + "self_attn.k_norm.weight", norm(d))]
        t.append((p + "post_attention_layernorm.weight", norm(h)))
        if gemma:
            t.append((p + "pre_feedforward_layernorm.weight", norm(h)))
        if is_moe_layer(cfg, i):
            t += moe_weights(cfg, p, mat)
        elif fused:
            t.append((p + "mlp.gate_up_proj.weight", mat(2 * inter, h)))
        else:
            t += [(p + "mlp.gate_proj.weight", mat(inter, h)),
                  (p + "mlp.up_proj.weight", mat(inter, h))]
        t.append((p + "mlp.down_proj.weight", mat(h, inter)))
        if gemma:
            t.append((p + "post_feedforward_layernorm.weight", norm(h)))
    t.append(("model.norm.weight", norm(h)))
    if not cfg["tie_word_embeddings"]:
        t.append(("lm_head.weight", mat(v, h)))
    return t


def is_moe_layer(cfg, layer):
    """transformers' rule: Mixtral's layers are all sparse; Qwen3-MoE's unless listed in
    mlp_only_layers or off the decoder_sparse_step grid."""
    arch = cfg["architectures"][0]
    if arch == "MixtralForCausalLM":
        return True
    if arch not in ("Qwen3MoeForCausalLM", "Qwen2MoeForCausalLM"):
        return False
    return (layer not in (cfg.get("mlp_only_layers") or [])
            and cfg["num_experts"] > 0 and (layer + 1) % cfg.get("decoder_sparse_step", 1) == 0)


def moe_weights(cfg, p, mat):
    """Router and experts of one sparse layer, in the Hub checkpoints' names and order."""
    h = cfg["hidden_size"]
    if cfg["architectures"][0] == "MixtralForCausalLM":
        experts, inter = cfg["num_local_experts"], cfg["intermediate_size"]
        gate, names = p + "block_sparse_moe.gate.weight", ("w1", "w3", "w2")
        expert = p + "block_sparse_moe.experts.{}.{}.weight"
    else:
        experts, inter = cfg["num_experts"], cfg["moe_intermediate_size"]
        gate, names = p + "mlp.gate.weight", ("gate_proj", "up_proj", "down_proj")
        expert = p + "mlp.experts.{}.{}.weight"
    # Router rows of norm ~2 make router logits of spread ~2: the golden tokens route to many
    # experts, and the top-2 softmax weights are far from ties.
    t = [(gate, 2.0 * mat(experts, h))]
    for e in range(experts):
        t += [(expert.format(e, names[0]), mat(inter, h)),
              (expert.format(e, names[1]), mat(inter, h)),
              (expert.format(e, names[2]), mat(h, inter))]
    if "shared_expert_intermediate_size" in cfg:  # Qwen2-MoE
        si = cfg["shared_expert_intermediate_size"]
        t += [(p + "mlp.shared_expert.gate_proj.weight", mat(si, h)),
              (p + "mlp.shared_expert.up_proj.weight", mat(si, h)),
              (p + "mlp.shared_expert.down_proj.weight", mat(h, si)),
              (p + "mlp.shared_expert_gate.weight", mat(1, h))]
    return t


def e4m3_values():
    """The value of each of the 256 F8_E4M3 codes (bias 7, 3 mantissa bits, no infinities,
    0x7f/0xff NaN)."""
    out = np.empty(256)
    for code in range(256):
        sign = -1.0 if code & 0x80 else 1.0
        exp, mant = (code >> 3) & 0xF, code & 0x7
        if exp == 15 and mant == 7:
            out[code] = np.nan
        elif exp == 0:
            out[code] = sign * mant / 8.0 * 2.0 ** -6
        else:
            out[code] = sign * (1 + mant / 8.0) * 2.0 ** (exp - 7)
    return out


def to_e4m3(x):
    """Nearest F8_E4M3 code of each value (|x| <= 448; ties to the even code)."""
    values = e4m3_values()
    codes = np.array([c for c in range(128) if not np.isnan(values[c])])  # +0 .. 448, ascending
    mags = values[codes]
    a = np.abs(x).reshape(-1)
    hi = np.clip(np.searchsorted(mags, a), 1, len(mags) - 1)
    lo = hi - 1
    dlo, dhi = a - mags[lo], mags[hi] - a
    pick = np.where(dlo < dhi, lo, np.where(dhi < dlo, hi, np.where(codes[lo] % 2 == 0, lo, hi)))
    out = codes[pick] | np.where(x.reshape(-1) < 0, 0x80, 0)
    return out.astype(np.uint8).reshape(x.shape)


def quantize_fp8(tensors, block):
    """Attention and MLP matrices -> (F8_E4M3 codes, F32 `weight_scale_inv` per block of
    block[0] x block[1]): scale = block amax / 448, so each block spans the format's range."""
    br, bc = block
    out = []
    for name, a in tensors:
        if a.ndim != 2 or not (".self_attn." in name or ".mlp." in name):
            out.append((name, a))
            continue
        rows, cols = a.shape
        grid = a.reshape(rows // br, br, cols // bc, bc)
        scale = (np.abs(grid).max(axis=(1, 3)) / 448.0).astype(np.float32)
        codes = to_e4m3(grid / scale[:, None, :, None].astype(np.float64))
        out += [(name, codes.reshape(rows, cols)), (name + "_scale_inv", scale)]
    return out


def tensor_checks(tensors):
    def value(a):  # F8_E4M3 codes as the values they stand for
        return e4m3_values()[a] if a.dtype == np.uint8 else a
    return {name: {"shape": list(a.shape),
                   "sum": float(np.sum(value(a), dtype=np.float64)),
                   "first": [float(x) for x in value(a).reshape(-1)[:4]]}
            for name, a in tensors}


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")


LLAMA = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "vocab_size": 256,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "hidden_act": "silu",
    "max_position_embeddings": 512,
    "rms_norm_eps": 1e-05,
    "rope_theta": 500000.0,
    # A small original context so that low, medium and high frequencies all occur at
    # head_dim 16.
    "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                     "high_freq_factor": 4.0, "original_max_position_embeddings": 64},
    "attention_bias": False,
    "mlp_bias": False,
    "tie_word_embeddings": False,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "torch_dtype": "float32",
}

QWEN3 = {
    "architectures": ["Qwen3ForCausalLM"],
    "model_type": "qwen3",
    "vocab_size": 256,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 32,
    "hidden_act": "silu",
    "max_position_embeddings": 512,
    "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0,
    "rope_scaling": None,
    "attention_bias": False,
    "use_sliding_window": False,
    "sliding_window": None,
    "max_window_layers": 2,
    "tie_word_embeddings": True,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "torch_dtype": "float32",
}


MISTRAL = {
    "architectures": ["MistralForCausalLM"],
    "model_type": "mistral",
    "vocab_size": 256,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "hidden_act": "silu",
    "max_position_embeddings": 512,
    "rms_norm_eps": 1e-05,
    "rope_theta": 10000.0,
    "sliding_window": 8,
    "attention_dropout": 0.0,
    "tie_word_embeddings": False,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "torch_dtype": "float32",
}

PHI3 = {
    "architectures": ["Phi3ForCausalLM"],
    "model_type": "phi3",
    "vocab_size": 256,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "hidden_act": "silu",
    "max_position_embeddings": 128,
    "original_max_position_embeddings": 32,
    "rms_norm_eps": 1e-05,
    "rope_theta": 10000.0,
    "partial_rotary_factor": 0.5,
    # 4 factors: rotary dims 8 / 2. Short factors apply below position 32.
    "rope_scaling": {"rope_type": "longrope", "short_factor": [1.0, 1.25, 1.5, 2.0],
                     "long_factor": [1.0, 2.0, 4.0, 8.0],
                     "original_max_position_embeddings": 32},
    "sliding_window": None,
    "attention_bias": False,
    "attention_dropout": 0.0,
    "embd_pdrop": 0.0,
    "resid_pdrop": 0.0,
    "tie_word_embeddings": False,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "pad_token_id": 0,
    "torch_dtype": "float32",
}

GEMMA2 = {
    "architectures": ["Gemma2ForCausalLM"],
    "model_type": "gemma2",
    "vocab_size": 256,
    "hidden_size": 48,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 32,
    "hidden_activation": "gelu_pytorch_tanh",
    "max_position_embeddings": 512,
    "rms_norm_eps": 1e-06,
    "rope_theta": 10000.0,
    "query_pre_attn_scalar": 24,
    "attn_logit_softcapping": 5.0,
    "final_logit_softcapping": 30.0,
    "sliding_window": 8,
    "layer_types": ["sliding_attention", "full_attention"],
    "attention_bias": False,
    "attention_dropout": 0.0,
    "tie_word_embeddings": True,
    "pad_token_id": 0,
    "bos_token_id": 2,
    "eos_token_id": 1,
    "torch_dtype": "float32",
}

GEMMA3 = {
    "architectures": ["Gemma3ForCausalLM"],
    "model_type": "gemma3_text",
    "vocab_size": 256,
    "hidden_size": 48,
    "intermediate_size": 128,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 32,
    "hidden_activation": "gelu_pytorch_tanh",
    "max_position_embeddings": 512,
    "rms_norm_eps": 1e-06,
    # The form of the released Gemma 3 configs: global theta and scaling, local base apart.
    "rope_theta": 1000000.0,
    "rope_local_base_freq": 10000.0,
    "rope_scaling": {"rope_type": "linear", "factor": 2.0},
    "query_pre_attn_scalar": 24,
    "attn_logit_softcapping": None,
    "final_logit_softcapping": None,
    "sliding_window": 8,
    "sliding_window_pattern": 2,
    "layer_types": ["sliding_attention", "full_attention", "sliding_attention"],
    "attention_bias": False,
    "attention_dropout": 0.0,
    "tie_word_embeddings": True,
    "pad_token_id": 0,
    "bos_token_id": 2,
    "eos_token_id": 1,
    "torch_dtype": "float32",
}

QWEN3_YARN = dict(QWEN3, rope_theta=10000.0, max_position_embeddings=1024,
                  rope_scaling={"rope_type": "yarn", "factor": 4.0,
                                "original_max_position_embeddings": 256,
                                "beta_fast": 32.0, "beta_slow": 1.0})

QWEN3_MOE = {
    "architectures": ["Qwen3MoeForCausalLM"],
    "model_type": "qwen3_moe",
    "vocab_size": 256,
    "hidden_size": 64,
    "intermediate_size": 128,  # the dense layer (mlp_only_layers)
    "moe_intermediate_size": 32,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 32,
    "hidden_act": "silu",
    "max_position_embeddings": 512,
    "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0,
    "rope_scaling": None,
    "attention_bias": False,
    "use_sliding_window": False,
    "sliding_window": None,
    "num_experts": 8,
    "num_experts_per_tok": 2,
    "norm_topk_prob": True,
    "decoder_sparse_step": 1,
    "mlp_only_layers": [1],
    "router_aux_loss_coef": 0.001,
    "output_router_logits": False,
    "tie_word_embeddings": False,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "torch_dtype": "float32",
}

MIXTRAL = {
    "architectures": ["MixtralForCausalLM"],
    "model_type": "mixtral",
    "vocab_size": 256,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "hidden_act": "silu",
    "max_position_embeddings": 512,
    "rms_norm_eps": 1e-05,
    "rope_theta": 1000000.0,
    "sliding_window": None,
    "attention_dropout": 0.0,
    "num_local_experts": 8,
    "num_experts_per_tok": 2,
    "router_jitter_noise": 0.0,
    "router_aux_loss_coef": 0.02,
    "output_router_logits": False,
    "tie_word_embeddings": False,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "torch_dtype": "float32",
}

QWEN2_MOE = {k: v for k, v in QWEN3_MOE.items() if k != "head_dim"}
QWEN2_MOE.update({
    "architectures": ["Qwen2MoeForCausalLM"],
    "model_type": "qwen2_moe",
    "qkv_bias": True,
    "norm_topk_prob": False,  # Qwen2MoeConfig's default: the top-k weights are not renormalised
    "shared_expert_intermediate_size": 48,
    "max_window_layers": 3,
})
del QWEN2_MOE["attention_bias"]

QWEN3_FP8 = dict(QWEN3, quantization_config={
    "quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
    "weight_block_size": [32, 32]})

MODELS = (("tiny-llama", LLAMA, 1234), ("tiny-qwen3", QWEN3, 5678),
          ("tiny-mistral", MISTRAL, 2024), ("tiny-phi3", PHI3, 3003),
          ("tiny-gemma2", GEMMA2, 2002), ("tiny-gemma3", GEMMA3, 3333),
          ("tiny-qwen3-yarn", QWEN3_YARN, 7070),
          ("tiny-qwen3-moe", QWEN3_MOE, 3030), ("tiny-mixtral", MIXTRAL, 8787),
          ("tiny-qwen3-fp8", QWEN3_FP8, 5678), ("tiny-qwen2-moe", QWEN2_MOE, 2121))


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join("tests", "data")
    for name, cfg, seed in MODELS:
        d = os.path.join(root, name)
        os.makedirs(d, exist_ok=True)
        tensors = make_weights(cfg, seed)
        if "quantization_config" in cfg:
            tensors = quantize_fp8(tensors, cfg["quantization_config"]["weight_block_size"])
        write_json(os.path.join(d, "config.json"), cfg)
        write_safetensors(os.path.join(d, "model.safetensors"), tensors)
        write_json(os.path.join(d, "tensor_checks.json"), tensor_checks(tensors))
        if name == "tiny-llama":
            sd = os.path.join(root, "tiny-llama-sharded")
            os.makedirs(sd, exist_ok=True)
            write_json(os.path.join(sd, "config.json"), cfg)
            half = len(tensors) // 2
            shards = [tensors[:half], tensors[half:]]
            weight_map = {}
            for i, part in enumerate(shards):
                fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
                write_safetensors(os.path.join(sd, fname), part)
                weight_map.update({n: fname for n, _ in part})
            total = sum(a.nbytes for _, a in tensors)
            write_json(os.path.join(sd, "model.safetensors.index.json"),
                       {"metadata": {"total_size": total}, "weight_map": weight_map})
    print(f"wrote tiny models under {root}")


if __name__ == "__main__":
    main()
