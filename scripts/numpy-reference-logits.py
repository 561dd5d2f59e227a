#!/usr/bin/env python3
"""An independent float64 numpy forward pass of the tiny test models, for checking the engine
where torch and transformers are not installed.

    python3 scripts/numpy-reference-logits.py [--length N] tests/data OUT [model ...]

For each model directory (default: all tiny models it knows) it reads config.json and the f32
safetensors with numpy alone, runs the golden token ids of scripts/golden-logits.py through a
plain implementation of the Hugging Face semantics of the architecture, and writes

  OUT/<model>/golden_ids.json, golden_logits.f32   (same layout as scripts/golden-logits.py)
  OUT/<model>/config.json, *.safetensors           (copies, so OUT is a test data root)

so that `INVAR_TEST_DATA_DIR=OUT build/tests/golden/invar_golden_tests` checks the engine against
this reference instead of transformers. Where tests/data already holds transformers' goldens for
a model, it also prints the reference's distance to them (a check of the reference itself).
It is a stand-in until transformers' goldens exist, never a replacement for them.
--length N repeats the golden ids cyclically to N tokens (e.g. 40 to take tiny-phi3 past its
longrope switch at position 32); the transformers comparison is then skipped.
"""
import json
import math
import os
import shutil
import struct
import sys

import numpy as np

IDS = [1, 17, 42, 255, 0, 128, 7, 7, 99, 200, 3, 64, 31, 250, 5, 77, 18, 142, 9, 233, 60, 2, 111, 45]
MODELS = ("tiny-llama", "tiny-qwen3", "tiny-mistral", "tiny-phi3", "tiny-gemma2", "tiny-gemma3",
          "tiny-qwen3-yarn", "tiny-qwen3-moe", "tiny-mixtral", "tiny-qwen3-fp8", "tiny-qwen2-moe")


def e4m3(codes):
    """F8_E4M3 codes -> their values (bias 7, 3 mantissa bits, 0x7f/0xff NaN)."""
    c = codes.astype(np.int64)
    sign = np.where(c & 0x80, -1.0, 1.0)
    exp, mant = (c >> 3) & 0xF, c & 0x7
    normal = (1 + mant / 8.0) * 2.0 ** (exp - 7)
    value = np.where(exp == 0, mant / 8.0 * 2.0 ** -6, normal)
    return np.where((exp == 15) & (mant == 7), np.nan, sign * value)


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] in ("F32", "F8_E4M3"), f"{path}: {name} is {info['dtype']}"
        b, e = info["data_offsets"]
        if info["dtype"] == "F8_E4M3":
            out[name] = e4m3(np.frombuffer(data[b:e], dtype=np.uint8)).reshape(info["shape"])
        else:
            out[name] = np.frombuffer(data[b:e], dtype="<f4").reshape(info["shape"]).astype(
                np.float64)
    return out


def read_model(path):
    with open(os.path.join(path, "config.json")) as f:
        cfg = json.load(f)
    w = {}
    for name in sorted(os.listdir(path)):
        if name.endswith(".safetensors"):
            w.update(read_safetensors(os.path.join(path, name)))
    q = cfg.get("quantization_config")
    if q:  # fp8 blocks: weight = value * weight_scale_inv of its block
        br, bc = q["weight_block_size"]
        for name in [n for n in w if n.endswith("_scale_inv")]:
            scale = w.pop(name)
            base = name[: -len("_scale_inv")]
            rows, cols = w[base].shape
            full = np.repeat(np.repeat(scale, br, axis=0), bc, axis=1)[:rows, :cols]
            w[base] = w[base] * full
    return cfg, w


def rms_norm(x, weight, eps, offset=0.0):
    var = np.mean(x * x, axis=-1, keepdims=True)
    return x / np.sqrt(var + eps) * (offset + weight)


def rope_inv_freq(cfg, rot_dim, theta, r=None):
    """inv_freq [rot_dim/2] and the cos/sin multiplier of transformers' rope initializers; `r`
    is the scaling dict (default: the config's rope_scaling or rope_parameters)."""
    inv = 1.0 / theta ** (np.arange(0, rot_dim, 2, dtype=np.float64) / rot_dim)
    if r is None:
        r = cfg.get("rope_scaling") or cfg.get("rope_parameters") or {}
    kind = r.get("rope_type", r.get("type", "default"))
    factor = 1.0
    if kind == "default":
        pass
    elif kind == "linear":
        inv = inv / r["factor"]
    elif kind == "llama3":
        f, lo, hi, old = (r["factor"], r["low_freq_factor"], r["high_freq_factor"],
                          r["original_max_position_embeddings"])
        wavelen = 2 * math.pi / inv
        smooth = (old / wavelen - lo) / (hi - lo)
        mid = (1 - smooth) * inv / f + smooth * inv
        inv = np.where(wavelen > old / lo, inv / f, np.where(wavelen < old / hi, inv, mid))
    elif kind in ("longrope", "su"):
        # Short factors below original_max_position_embeddings, long ones from there on, chosen
        # per position (transformers picks one table per call by the sequence length: the same
        # for sequences that stay below it, as the golden one does).
        orig = r.get("original_max_position_embeddings") or cfg["original_max_position_embeddings"]
        f = r.get("factor") or cfg["max_position_embeddings"] / orig
        factor = r.get("attention_factor") or (
            1.0 if f <= 1.0 else math.sqrt(1 + math.log(f) / math.log(orig)))
        short = inv / np.array(r["short_factor"], dtype=np.float64)
        long = inv / np.array(r["long_factor"], dtype=np.float64)
        return (short, long, orig), factor
    elif kind == "yarn":
        # transformers' _compute_yarn_parameters: frequencies below the correction range are
        # interpolated (divided by factor), above it extrapolated (kept), a linear ramp between.
        orig = r.get("original_max_position_embeddings") or cfg["max_position_embeddings"]
        f = r.get("factor") or cfg["max_position_embeddings"] / orig

        def mscale(scale, m=1.0):
            return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0

        factor = r.get("attention_factor")
        if factor is None:
            if r.get("mscale") and r.get("mscale_all_dim"):
                factor = mscale(f, r["mscale"]) / mscale(f, r["mscale_all_dim"])
            else:
                factor = mscale(f)
        beta_fast = r.get("beta_fast") or 32
        beta_slow = r.get("beta_slow") or 1

        def correction_dim(rotations):
            return rot_dim * math.log(orig / (rotations * 2 * math.pi)) / (2 * math.log(theta))

        low, high = correction_dim(beta_fast), correction_dim(beta_slow)
        if r.get("truncate", True):
            low, high = math.floor(low), math.ceil(high)
        low, high = max(low, 0), min(high, rot_dim - 1)
        if low == high:
            high += 0.001
        ramp = np.clip((np.arange(rot_dim // 2, dtype=np.float64) - low) / (high - low), 0, 1)
        extrapolation = 1 - ramp
        inv = inv / f * (1 - extrapolation) + inv * extrapolation
    else:
        raise SystemExit(f"rope type {kind} is not implemented in this reference")
    return inv, factor


def rope(x, positions, inv_freq, factor, rot_dim):
    """Rotates the first rot_dim dims of every head of x [T, heads, D], half ("neox") layout."""
    if isinstance(inv_freq, tuple):  # longrope: (short, long, first position of long)
        short, long, orig = inv_freq
        inv_freq = np.where(positions[:, None] >= orig, long[None, :], short[None, :])
    else:
        inv_freq = inv_freq[None, :]
    ang = positions[:, None].astype(np.float64) * inv_freq  # [T, rot/2]
    cos = np.cos(ang)[:, None, :] * factor
    sin = np.sin(ang)[:, None, :] * factor
    half = rot_dim // 2
    a, b = x[..., :half], x[..., half:rot_dim]
    out = x.copy()
    out[..., :half] = a * cos - b * sin
    out[..., half:rot_dim] = b * cos + a * sin
    return out


def attention(q, k, v, scale, window, softcap=None):
    """q [T, Hq, D], k/v [T, Hkv, D]; causal, optionally a sliding window of `window` keys and
    a tanh soft-cap of the scaled scores (Gemma 2)."""
    t, hq, d = q.shape
    g = hq // k.shape[1]
    k = np.repeat(k, g, axis=1)
    v = np.repeat(v, g, axis=1)
    s = np.einsum("qhd,khd->hqk", q, k) * scale
    if softcap:
        s = np.tanh(s / softcap) * softcap
    qi = np.arange(t)[:, None]
    ki = np.arange(t)[None, :]
    visible = ki <= qi
    if window:
        visible &= ki > qi - window
    s = np.where(visible[None], s, -np.inf)
    s = s - s.max(axis=-1, keepdims=True)
    p = np.exp(s)
    p /= p.sum(axis=-1, keepdims=True)
    return np.einsum("hqk,khd->qhd", p, v)


def silu(x):
    return x / (1.0 + np.exp(-x))


def gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def split_fused(cfg, w):
    """Phi-3's qkv_proj and gate_up_proj as the separate projections (rows q, k, v; gate, up)."""
    h = cfg["hidden_size"]
    hq = cfg["num_attention_heads"]
    hkv = cfg.get("num_key_value_heads", hq)
    d = cfg.get("head_dim") or h // hq
    inter = cfg["intermediate_size"]
    w = dict(w)
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        qkv = w.pop(p + "self_attn.qkv_proj.weight")
        w[p + "self_attn.q_proj.weight"] = qkv[: hq * d]
        w[p + "self_attn.k_proj.weight"] = qkv[hq * d: (hq + hkv) * d]
        w[p + "self_attn.v_proj.weight"] = qkv[(hq + hkv) * d:]
        gu = w.pop(p + "mlp.gate_up_proj.weight")
        w[p + "mlp.gate_proj.weight"] = gu[:inter]
        w[p + "mlp.up_proj.weight"] = gu[inter:]
    return w


def moe_layout(cfg, layer):
    """(router name, expert name pattern, gate/up/down names, top-k, renormalize) of a sparse
    layer, or None for a dense one (transformers' rule for Qwen3-MoE: not in mlp_only_layers
    and on the decoder_sparse_step grid; every Mixtral layer is sparse)."""
    arch = cfg["architectures"][0]
    p = f"model.layers.{layer}."
    if arch == "MixtralForCausalLM":
        return (p + "block_sparse_moe.gate.weight", p + "block_sparse_moe.experts.{}.{}.weight",
                ("w1", "w3", "w2"), cfg["num_experts_per_tok"], True)
    if arch in ("Qwen3MoeForCausalLM", "Qwen2MoeForCausalLM") and layer not in (cfg.get("mlp_only_layers") or []) and (
            cfg["num_experts"] > 0 and (layer + 1) % cfg.get("decoder_sparse_step", 1) == 0):
        return (p + "mlp.gate.weight", p + "mlp.experts.{}.{}.weight",
                ("gate_proj", "up_proj", "down_proj"), cfg["num_experts_per_tok"],
                cfg.get("norm_topk_prob", False))
    return None


def moe_mlp(m, w, layout, usage):
    """Sparse MLP: softmax over the router logits, the top-k experts (ties to the lower id),
    their weights renormalized to sum 1 when asked, the weighted expert outputs summed; plus,
    for Qwen2-MoE, the shared expert's output times sigmoid(shared_expert_gate . x).
    `usage` counts how many tokens each expert served, and its key "gap" keeps the smallest
    margin between the k-th and the (k+1)-th probability (a tiny one would let float32 routing
    pick another expert than this float64 one)."""
    router, expert, (g, u, d), k, renorm = layout
    logits = m @ w[router].T
    probs = np.exp(logits - logits.max(axis=-1, keepdims=True))
    probs /= probs.sum(axis=-1, keepdims=True)
    out = np.zeros_like(m)
    for t in range(m.shape[0]):
        order = sorted(range(probs.shape[1]), key=lambda e: (-probs[t, e], e))
        top = order[:k]
        if k < len(order):
            usage["gap"] = min(usage.get("gap", 1.0), probs[t, order[k - 1]] - probs[t, order[k]])
        weights = probs[t, top] / (probs[t, top].sum() if renorm else 1.0)
        for e, wt in sorted(zip(top, weights)):
            x = m[t]
            y = (silu(x @ w[expert.format(e, g)].T) * (x @ w[expert.format(e, u)].T)) @ \
                w[expert.format(e, d)].T
            out[t] += wt * y
            usage[e] = usage.get(e, 0) + 1
    shared = router.replace("mlp.gate.weight", "mlp.shared_expert.")
    if shared + "gate_proj.weight" in w:
        y = (silu(m @ w[shared + "gate_proj.weight"].T) * (m @ w[shared + "up_proj.weight"].T)) @ \
            w[shared + "down_proj.weight"].T
        g = m @ w[router.replace("mlp.gate.weight", "mlp.shared_expert_gate.weight")].T
        out += y / (1.0 + np.exp(-g))
    return out


def forward_llama_family(cfg, w, ids):
    """Llama, Qwen2, Qwen3, Mistral, Phi-3, and the sparse MLPs of Qwen3-MoE, Qwen2-MoE and
    Mixtral."""
    arch = cfg["architectures"][0]
    h = cfg["hidden_size"]
    hq = cfg["num_attention_heads"]
    hkv = cfg.get("num_key_value_heads", hq)
    d = cfg.get("head_dim") or h // hq
    eps = cfg.get("rms_norm_eps", 1e-6)
    theta = cfg.get("rope_theta", (cfg.get("rope_parameters") or {}).get("rope_theta", 10000.0))
    window = None
    if arch == "MistralForCausalLM":
        window = cfg.get("sliding_window", 4096)
    if arch == "MixtralForCausalLM":
        window = cfg.get("sliding_window")
    usage = {}
    rot = d
    if arch == "Phi3ForCausalLM":
        window = cfg.get("sliding_window")
        rot = int(d * cfg.get("partial_rotary_factor", 1.0))
        w = split_fused(cfg, w)
    inv_freq, factor = rope_inv_freq(cfg, rot, theta)
    pos = np.arange(len(ids))
    x = w["model.embed_tokens.weight"][ids]
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        a = rms_norm(x, w[p + "input_layernorm.weight"], eps)

        def proj(name):
            y = a @ w[p + f"self_attn.{name}.weight"].T
            if p + f"self_attn.{name}.bias" in w:
                y = y + w[p + f"self_attn.{name}.bias"]
            return y

        q = proj("q_proj").reshape(len(ids), hq, d)
        k = proj("k_proj").reshape(len(ids), hkv, d)
        v = proj("v_proj").reshape(len(ids), hkv, d)
        if p + "self_attn.q_norm.weight" in w:
            q = rms_norm(q, w[p + "self_attn.q_norm.weight"], eps)
            k = rms_norm(k, w[p + "self_attn.k_norm.weight"], eps)
        q = rope(q, pos, inv_freq, factor, rot)
        k = rope(k, pos, inv_freq, factor, rot)
        o = attention(q, k, v, 1.0 / math.sqrt(d), window).reshape(len(ids), hq * d)
        x = x + o @ w[p + "self_attn.o_proj.weight"].T
        m = rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
        layout = moe_layout(cfg, i)
        if layout:
            x = x + moe_mlp(m, w, layout, usage)
            continue
        gate = m @ w[p + "mlp.gate_proj.weight"].T
        up = m @ w[p + "mlp.up_proj.weight"].T
        x = x + (silu(gate) * up) @ w[p + "mlp.down_proj.weight"].T
    if usage:
        gap = usage.pop("gap", None)
        print(f"  tokens per expert id (all sparse layers): {dict(sorted(usage.items()))}; "
              f"smallest top-k margin {gap:.3g}")
    x = rms_norm(x, w["model.norm.weight"], eps)
    head = w["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings") else w["lm_head.weight"]
    return x @ head.T


def gemma_rope(cfg, d):
    """{layer type: (inv_freq, factor)}. Gemma 3 gives sliding layers their own base
    (rope_local_base_freq) and keeps rope_scaling for the full layers; Gemma 2 has one rope."""
    if "rope_parameters" in cfg and "full_attention" in cfg["rope_parameters"]:
        params = cfg["rope_parameters"]
    else:
        glob = dict(cfg.get("rope_scaling") or {})
        glob.setdefault("rope_theta", cfg.get("rope_theta", 10000.0))
        loc = {"rope_type": "default", "rope_theta": cfg.get("rope_local_base_freq", 10000.0)}
        if cfg["architectures"][0] == "Gemma2ForCausalLM":
            loc = glob
        params = {"full_attention": glob, "sliding_attention": loc}
    return {t: rope_inv_freq(cfg, d, p["rope_theta"], p) for t, p in params.items()}


def layer_types(cfg):
    if cfg.get("layer_types"):
        return cfg["layer_types"]
    default = 2 if cfg["architectures"][0] == "Gemma2ForCausalLM" else 6
    pattern = cfg.get("sliding_window_pattern", default)
    return ["sliding_attention" if (i + 1) % pattern else "full_attention"
            for i in range(cfg["num_hidden_layers"])]


def forward_gemma(cfg, w, ids):
    """Gemma 2 and Gemma 3 (text): scaled embedding, 1 + w norms on both sides of each block,
    gelu-tanh MLP, query_pre_attn_scalar, soft-caps, sliding window on the sliding layers."""
    gemma3 = cfg["architectures"][0] == "Gemma3ForCausalLM"
    h = cfg["hidden_size"]
    hq = cfg["num_attention_heads"]
    hkv = cfg.get("num_key_value_heads", hq)
    d = cfg.get("head_dim") or h // hq
    eps = cfg.get("rms_norm_eps", 1e-6)
    scale = cfg.get("query_pre_attn_scalar", 256) ** -0.5
    attn_cap = None if gemma3 else cfg.get("attn_logit_softcapping", 50.0)
    final_cap = cfg.get("final_logit_softcapping", None if gemma3 else 30.0)
    types = layer_types(cfg)
    ropes = gemma_rope(cfg, d)
    pos = np.arange(len(ids))
    # transformers multiplies by sqrt(hidden) rounded to the weights' dtype (float32 here).
    x = w["model.embed_tokens.weight"][ids] * float(np.float32(h ** 0.5))
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."

        def norm(name, v):
            return rms_norm(v, w[p + name + ".weight"], eps, offset=1.0)

        a = norm("input_layernorm", x)
        q = (a @ w[p + "self_attn.q_proj.weight"].T).reshape(len(ids), hq, d)
        k = (a @ w[p + "self_attn.k_proj.weight"].T).reshape(len(ids), hkv, d)
        v = (a @ w[p + "self_attn.v_proj.weight"].T).reshape(len(ids), hkv, d)
        if gemma3:
            q = norm("self_attn.q_norm", q)
            k = norm("self_attn.k_norm", k)
        inv_freq, factor = ropes[types[i]]
        q = rope(q, pos, inv_freq, factor, d)
        k = rope(k, pos, inv_freq, factor, d)
        window = cfg.get("sliding_window", 4096) if types[i] == "sliding_attention" else None
        o = attention(q, k, v, scale, window, attn_cap).reshape(len(ids), hq * d)
        x = x + norm("post_attention_layernorm", o @ w[p + "self_attn.o_proj.weight"].T)
        m = norm("pre_feedforward_layernorm", x)
        gate = m @ w[p + "mlp.gate_proj.weight"].T
        up = m @ w[p + "mlp.up_proj.weight"].T
        x = x + norm("post_feedforward_layernorm", (gelu_tanh(gate) * up) @ w[p + "mlp.down_proj.weight"].T)
    x = rms_norm(x, w["model.norm.weight"], eps, offset=1.0)
    head = w["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings", True) else w["lm_head.weight"]
    logits = x @ head.T
    if final_cap:
        logits = np.tanh(logits / final_cap) * final_cap
    return logits


FORWARD = {
    "Gemma2ForCausalLM": forward_gemma,
    "Gemma3ForCausalLM": forward_gemma,
    "LlamaForCausalLM": forward_llama_family,
    "Qwen2ForCausalLM": forward_llama_family,
    "Qwen2MoeForCausalLM": forward_llama_family,
    "Qwen3ForCausalLM": forward_llama_family,
    "MistralForCausalLM": forward_llama_family,
    "Phi3ForCausalLM": forward_llama_family,
    "Qwen3MoeForCausalLM": forward_llama_family,
    "MixtralForCausalLM": forward_llama_family,
}


def main():
    args = sys.argv[1:]
    ids = IDS
    if args[:1] == ["--length"]:
        n = int(args[1])
        ids = [IDS[i % len(IDS)] for i in range(n)]
        args = args[2:]
    if len(args) < 2:
        raise SystemExit(__doc__)
    root, out_root = args[0], args[1]
    names = args[2:] or MODELS
    for name in names:
        src = os.path.join(root, name)
        cfg, w = read_model(src)
        logits = FORWARD[cfg["architectures"][0]](cfg, w, np.array(ids))
        dst = os.path.join(out_root, name)
        os.makedirs(dst, exist_ok=True)
        for f in os.listdir(src):
            if f == "config.json" or f.endswith(".safetensors") or f.endswith(".index.json"):
                shutil.copy(os.path.join(src, f), dst)
        logits.astype("<f4").tofile(os.path.join(dst, "golden_logits.f32"))
        with open(os.path.join(dst, "golden_ids.json"), "w") as f:
            f.write(json.dumps(ids) + "\n")
        sharded = src + "-sharded"  # tiny-llama-sharded: the model only (goldens: tiny-llama)
        if os.path.isdir(sharded):
            shutil.copytree(sharded, dst + "-sharded", dirs_exist_ok=True)
        line = f"{name}: reference logits {logits.shape}, max |logit| {np.abs(logits).max():.4f}"
        hf = os.path.join(src, "golden_logits.f32")
        if os.path.exists(hf) and ids == IDS:
            gold = np.fromfile(hf, dtype="<f4").reshape(logits.shape)
            err = np.abs(gold - logits).max()
            line += f"; vs transformers: max abs diff {err:.3g} (relative {err / np.abs(gold).max():.3g})"
        print(line)


if __name__ == "__main__":
    main()
