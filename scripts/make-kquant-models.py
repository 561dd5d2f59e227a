#!/usr/bin/env python3
"""Writes tests/data/tiny-kquants/: a tiny Llama GGUF whose matrices use every packed encoding
invar reads (Q8_0, Q4_0, Q4_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K), and expected.json, the FNV-1a hash
and a few values of every tensor as the `gguf` Python package decodes it.

The quantizers are written here in numpy from the block layouts (core/block_quant.h): plain
min/max schemes, good enough for a test model. Each tensor is then decoded twice, by this
script's own decoder and by gguf.quants.dequantize, and the two must agree bit for bit: that is
the independent check of invar's reading of the layouts (tests/unit/kquant_model_test.cpp
compares invar's decoders with the hashes).

Run it in a venv with the pinned packages (what the test data was made with):
    python3 -m venv build/kquant-venv
    build/kquant-venv/bin/pip install gguf==0.19.0 numpy==2.4.6
    build/kquant-venv/bin/python scripts/make-kquant-models.py
"""
import json
import os
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "tests", "data", "tiny-kquants")

# The model: Llama layout, hidden 256 (one K-quant super-block per row), intermediate 512 (two
# for down_proj), 4 heads of 64 (2 kv heads), one layer, a byte-sized vocabulary, untied
# output: about 430 KB.
H, I, V, HEADS, KV_HEADS, LAYERS = 256, 512, 256, 4, 2, 1
D = H // HEADS


def f16(x):
    return np.asarray(x, dtype=np.float32).astype(np.float16)


def f16_bytes(x):
    return f16(x).reshape(-1, 1).view(np.uint8)


def nibbles(lo, hi):
    return (lo.astype(np.uint8) | (hi.astype(np.uint8) << 4)).astype(np.uint8)


# ------------------------------------------------------------------ quantizers (blocks of rows)
# Each takes x [n_blocks, block elements] f32 and returns [n_blocks, block bytes] uint8.

def q8_0(x):
    d = f16(np.abs(x).max(axis=1) / 127).astype(np.float32)
    q = np.clip(np.round(x / np.where(d == 0, 1, d)[:, None]), -128, 127).astype(np.int8)
    return np.hstack([f16_bytes(d), q.view(np.uint8)])


def q4_0(x):
    d = f16(np.abs(x).max(axis=1) / 7).astype(np.float32)
    q = np.clip(np.round(x / np.where(d == 0, 1, d)[:, None]) + 8, 0, 15)
    return np.hstack([f16_bytes(d), nibbles(q[:, :16], q[:, 16:])])


def q4_1(x):
    lo, hi = x.min(axis=1), x.max(axis=1)
    d = f16((hi - lo) / 15).astype(np.float32)
    m = f16(lo).astype(np.float32)
    q = np.clip(np.round((x - m[:, None]) / np.where(d == 0, 1, d)[:, None]), 0, 15)
    return np.hstack([f16_bytes(d), f16_bytes(m), nibbles(q[:, :16], q[:, 16:])])


def sub_scales(x, sub, levels):
    """Asymmetric sub-blocks: x ~ scale * q - min with q in 0..levels, min >= 0."""
    xs = x.reshape(x.shape[0], -1, sub)
    mn = np.maximum(0, -xs.min(axis=2))
    scale = (xs.max(axis=2) + mn) / levels
    return xs, scale, mn


def pack_k4_scales(sc, mn):
    """8 six-bit scales and mins into 12 bytes (q4_k/q5_k layout)."""
    out = np.zeros((sc.shape[0], 12), dtype=np.uint8)
    out[:, 0:4] = (sc[:, 0:4] & 63) | ((sc[:, 4:8] >> 4) << 6)
    out[:, 4:8] = (mn[:, 0:4] & 63) | ((mn[:, 4:8] >> 4) << 6)
    out[:, 8:12] = (sc[:, 4:8] & 15) | ((mn[:, 4:8] & 15) << 4)
    return out


def quant_k_asym(x, sub, levels, scale_levels):
    """The q2_k/q4_k/q5_k scheme: super-block d, dmin (f16), per sub-block integer scale and
    min (scale_levels max), per element q in 0..levels."""
    xs, scale, mn = sub_scales(x, sub, levels)
    d = f16(scale.max(axis=1) / scale_levels).astype(np.float32)
    dmin = f16(mn.max(axis=1) / scale_levels).astype(np.float32)
    sc = np.clip(np.round(scale / np.where(d == 0, 1, d)[:, None]), 0, scale_levels).astype(np.uint8)
    m = np.clip(np.round(mn / np.where(dmin == 0, 1, dmin)[:, None]), 0, scale_levels).astype(np.uint8)
    step = d[:, None] * sc
    off = dmin[:, None] * m
    q = np.clip(np.round((xs + off[:, :, None]) / np.where(step == 0, 1, step)[:, :, None]), 0, levels)
    return d, dmin, sc, m, q.reshape(x.shape[0], -1).astype(np.uint8)


def q2_k(x):
    d, dmin, sc, m, q = quant_k_asym(x, 16, 3, 15)
    # element 128h + 32j + l sits in qs[32h + l] at bits 2j
    qs = np.zeros((x.shape[0], 64), dtype=np.uint8)
    for h in range(2):
        for j in range(4):
            qs[:, 32 * h:32 * h + 32] |= q[:, 128 * h + 32 * j:128 * h + 32 * j + 32] << (2 * j)
    return np.hstack([(sc | (m << 4)).astype(np.uint8), qs, f16_bytes(d), f16_bytes(dmin)])


def q3_k(x):
    xs = x.reshape(x.shape[0], 16, 16)
    scale = np.abs(xs).max(axis=2) / 4
    d = f16(scale.max(axis=1) / 31).astype(np.float32)
    s = np.clip(np.round(scale / np.where(d == 0, 1, d)[:, None]), -32, 31).astype(np.int32)
    step = d[:, None] * s
    q = np.clip(np.round(xs / np.where(step == 0, 1, step)[:, :, None]), -4, 3).astype(np.int32)
    u = (q + 4).reshape(x.shape[0], 256).astype(np.uint8)  # 0..7: low 2 bits + high bit
    qs = np.zeros((x.shape[0], 64), dtype=np.uint8)
    hmask = np.zeros((x.shape[0], 32), dtype=np.uint8)
    for h in range(2):
        for j in range(4):
            part = u[:, 128 * h + 32 * j:128 * h + 32 * j + 32]
            qs[:, 32 * h:32 * h + 32] |= (part & 3) << (2 * j)
            hmask |= (part >> 2) << (4 * h + j)
    su = (s + 32).astype(np.uint8)  # stored 6-bit
    scales = np.zeros((x.shape[0], 12), dtype=np.uint8)
    scales[:, 0:8] = (su[:, 0:8] & 15) | ((su[:, 8:16] & 15) << 4)
    for i in range(16):
        scales[:, 8 + i % 4] |= (su[:, i] >> 4) << (2 * (i // 4))
    return np.hstack([hmask, qs, scales, f16_bytes(d)])


def q45_k(x, five):
    d, dmin, sc, m, q = quant_k_asym(x, 32, 31 if five else 15, 63)
    # element 64g + 32i + l: nibble i of qs[32g + l]; q5_k's fifth bit in qh[l] at bit 2g + i
    qs = np.zeros((x.shape[0], 128), dtype=np.uint8)
    qh = np.zeros((x.shape[0], 32), dtype=np.uint8)
    for g in range(4):
        for i in range(2):
            part = q[:, 64 * g + 32 * i:64 * g + 32 * i + 32]
            qs[:, 32 * g:32 * g + 32] |= (part & 15) << (4 * i)
            qh |= (part >> 4) << (2 * g + i)
    head = [f16_bytes(d), f16_bytes(dmin), pack_k4_scales(sc, m)]
    return np.hstack(head + ([qh] if five else []) + [qs])


def q6_k(x):
    xs = x.reshape(x.shape[0], 16, 16)
    scale = np.abs(xs).max(axis=2) / 32
    d = f16(scale.max(axis=1) / 127).astype(np.float32)
    s = np.clip(np.round(scale / np.where(d == 0, 1, d)[:, None]), -128, 127).astype(np.int32)
    step = d[:, None] * s
    q = np.clip(np.round(xs / np.where(step == 0, 1, step)[:, :, None]), -32, 31).astype(np.int32)
    u = (q + 32).reshape(x.shape[0], 256).astype(np.uint8)
    ql = np.zeros((x.shape[0], 128), dtype=np.uint8)
    qh = np.zeros((x.shape[0], 64), dtype=np.uint8)
    for h in range(2):
        for r in range(4):
            part = u[:, 128 * h + 32 * r:128 * h + 32 * r + 32]
            lo = 64 * h + 32 * (r & 1)
            ql[:, lo:lo + 32] |= (part & 15) << (4 * (r // 2))
            qh[:, 32 * h:32 * h + 32] |= (part >> 4) << (2 * r)
    return np.hstack([ql, qh, s.astype(np.int8).view(np.uint8), f16_bytes(d)])


QUANTIZERS = {
    Q.Q8_0: (32, q8_0), Q.Q4_0: (32, q4_0), Q.Q4_1: (32, q4_1), Q.Q2_K: (256, q2_k),
    Q.Q3_K: (256, q3_k), Q.Q4_K: (256, lambda x: q45_k(x, False)),
    Q.Q5_K: (256, lambda x: q45_k(x, True)), Q.Q6_K: (256, q6_k),
}


# ------------------------------------------------------------------ this script's decoder

def decode(blocks, qtype):
    """The layouts of core/block_quant.h, element by element in numpy (f32 throughout)."""
    n = blocks.shape[0]
    h16 = lambda a, o: blocks[:, o:o + 2].copy().view(np.float16).astype(np.float32)[:, 0]
    if qtype in (Q.Q8_0, Q.Q4_0, Q.Q4_1):
        d = h16(blocks, 0)
        if qtype == Q.Q8_0:
            return blocks[:, 2:34].view(np.int8).astype(np.float32) * d[:, None]
        qs = blocks[:, 4 if qtype == Q.Q4_1 else 2:][:, :16]
        q = np.hstack([qs & 15, qs >> 4]).astype(np.float32)
        if qtype == Q.Q4_0:
            return (q - 8) * d[:, None]
        return q * d[:, None] + h16(blocks, 2)[:, None]
    y = np.zeros((n, 256), dtype=np.float32)
    if qtype == Q.Q2_K:
        d, dmin = h16(blocks, 80), h16(blocks, 82)
        for e in range(256):
            h, j, l = e // 128, (e % 128) // 32, e % 32
            s = blocks[:, 8 * h + 2 * j + l // 16]
            q = (blocks[:, 16 + 32 * h + l] >> (2 * j)) & 3
            y[:, e] = (d * (s & 15).astype(np.float32)) * q.astype(np.float32) - dmin * (s >> 4).astype(np.float32)
    elif qtype == Q.Q3_K:
        d = h16(blocks, 108)
        sc = blocks[:, 96:108]
        for e in range(256):
            h, j, l = e // 128, (e % 128) // 32, e % 32
            i = 8 * h + 2 * j + l // 16
            low4 = (sc[:, i] & 15) if i < 8 else (sc[:, i - 8] >> 4)
            s = (low4 | (((sc[:, 8 + i % 4] >> (2 * (i // 4))) & 3) << 4)).astype(np.int32) - 32
            low = ((blocks[:, 32 + 32 * h + l] >> (2 * j)) & 3).astype(np.int32)
            hb = (blocks[:, l] >> (4 * h + j)) & 1
            y[:, e] = (d * s.astype(np.float32)) * (low - np.where(hb == 1, 0, 4)).astype(np.float32)
    elif qtype in (Q.Q4_K, Q.Q5_K):
        d, dmin = h16(blocks, 0), h16(blocks, 2)
        s = blocks[:, 4:16]
        qs0 = 48 if qtype == Q.Q5_K else 16
        for e in range(256):
            g, i, l = e // 64, (e % 64) // 32, e % 32
            b = 2 * g + i
            if b < 4:
                sc, mn = s[:, b] & 63, s[:, b + 4] & 63
            else:
                sc = (s[:, b + 4] & 15) | ((s[:, b - 4] >> 6) << 4)
                mn = (s[:, b + 4] >> 4) | ((s[:, b] >> 6) << 4)
            q = (blocks[:, qs0 + 32 * g + l] >> (4 * i)) & 15
            if qtype == Q.Q5_K:
                q = q | (((blocks[:, 16 + l] >> (2 * g + i)) & 1) << 4)
            y[:, e] = (d * sc.astype(np.float32)) * q.astype(np.float32) - dmin * mn.astype(np.float32)
    elif qtype == Q.Q6_K:
        d = h16(blocks, 208)
        sc = blocks[:, 192:208].view(np.int8).astype(np.float32)
        for e in range(256):
            h, r, l = e // 128, (e % 128) // 32, e % 32
            lb = blocks[:, 64 * h + 32 * (r & 1) + l]
            low = (lb & 15) if r < 2 else (lb >> 4)
            high = (blocks[:, 128 + 32 * h + l] >> (2 * r)) & 3
            q = (low | (high << 4)).astype(np.int32) - 32
            y[:, e] = (d * sc[:, 8 * h + 2 * r + l // 16]) * q.astype(np.float32)
    return y


def fnv1a64(data):
    h = 0xcbf29ce484222325
    for b in data:
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


def quantize_tensor(name, x, qtype):
    block, fn = QUANTIZERS[qtype]
    rows, cols = x.shape
    blocks = fn(x.reshape(-1, block).astype(np.float32)).astype(np.uint8)
    assert blocks.shape[1] == gguf.GGML_QUANT_SIZES[qtype][1], (name, blocks.shape)
    ours = decode(blocks, qtype).reshape(rows, cols)
    theirs = gguf.quants.dequantize(blocks.reshape(rows, -1), qtype).astype(np.float32)
    if not np.array_equal(ours.view(np.uint32), theirs.view(np.uint32)):
        bad = np.argwhere(ours != theirs)[0]
        sys.exit(f"{name} ({qtype.name}): this script's decoder and gguf's differ at {bad}: "
                 f"{ours[tuple(bad)]} vs {theirs[tuple(bad)]}")
    err = np.abs(theirs - x).max() / np.abs(x).max()
    assert err < 0.75, f"{name}: the quantizer is broken (max error {err:.3f} of max |x|)"
    return blocks.reshape(rows, -1), theirs, err


def main():
    rng = np.random.default_rng(20261205)
    # (name, shape, encoding): every packed encoding appears, K-quants both as a GEMM weight
    # and as the embedding table; down_proj rows hold two super-blocks.
    plan = [("token_embd.weight", (V, H), Q.Q4_K), ("output.weight", (V, H), Q.Q6_K)]
    per_layer = [
        {"attn_q": Q.Q2_K, "attn_k": Q.Q8_0, "attn_v": Q.Q3_K, "attn_output": Q.Q5_K,
         "ffn_gate": Q.Q4_0, "ffn_up": Q.Q4_1, "ffn_down": Q.Q4_K},
    ]
    shapes = {"attn_q": (H, H), "attn_k": (KV_HEADS * D, H), "attn_v": (KV_HEADS * D, H),
              "attn_output": (H, H), "ffn_gate": (I, H), "ffn_up": (I, H), "ffn_down": (H, I)}
    for l, types in enumerate(per_layer):
        for role, qtype in types.items():
            plan.append((f"blk.{l}.{role}.weight", shapes[role], qtype))

    os.makedirs(OUT, exist_ok=True)
    w = gguf.GGUFWriter(os.path.join(OUT, "model.gguf"), "llama")
    w.add_block_count(LAYERS)
    w.add_context_length(256)
    w.add_embedding_length(H)
    w.add_feed_forward_length(I)
    w.add_head_count(HEADS)
    w.add_head_count_kv(KV_HEADS)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(V)
    expected = {}
    for name, shape, qtype in plan:
        # ~1/sqrt(fan_in) weights with a few outliers, like a trained layer.
        x = rng.standard_normal(shape).astype(np.float32) / np.sqrt(shape[1])
        x[rng.random(shape) < 0.002] *= 8
        blocks, values, err = quantize_tensor(name, x, qtype)
        w.add_tensor(name, blocks, raw_dtype=qtype)
        expected[name] = {"type": qtype.name, "shape": list(shape),
                          "fnv1a64_f32": f"{fnv1a64(values.tobytes()):016x}",
                          "first": [float(v) for v in values.reshape(-1)[:8]],
                          "max_rel_error": round(float(err), 4)}
    for l in range(LAYERS):
        for norm in ("attn_norm", "ffn_norm"):
            w.add_tensor(f"blk.{l}.{norm}.weight", (1 + 0.1 * rng.standard_normal(H)).astype(np.float32))
    w.add_tensor("output_norm.weight", (1 + 0.1 * rng.standard_normal(H)).astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump({"generator": "scripts/make-kquant-models.py", "gguf": gguf.__version__
                   if hasattr(gguf, "__version__") else "0.19.0", "numpy": np.__version__,
                   "tensors": expected}, f, indent=1)
    size = os.path.getsize(os.path.join(OUT, "model.gguf"))
    print(f"wrote {OUT}/model.gguf ({size} bytes) and expected.json; "
          f"{len(plan)} packed tensors decode the same as gguf's decoder, bit for bit")


if __name__ == "__main__":
    main()
