#!/usr/bin/env python3
"""Writes reference logits of the tiny test models with Hugging Face transformers.

    python3 scripts/golden-logits.py tests/data [model ...]

For each tiny model directory under the given root (the MODELS below, or those named on the
command line, e.g. tiny-mistral), loads it with
AutoModelForCausalLM in float32 with eager attention (eager experts for MoE models, fp8
weights dequantized at load), runs one fixed sequence of token ids
through it, and writes:

  <dir>/golden_ids.json     the token ids, a JSON list of integers
  <dir>/golden_logits.f32   logits [len(ids), V], little-endian float32, row-major
  <dir>/golden_info.json    how they were made (device, torch and transformers versions)

Runs on the CPU or the first CUDA GPU (TF32 disabled so the matmuls stay float32). Needs only
torch and transformers; the tiny checkpoints come from scripts/make-tiny-models.py.
"""
import json
import os
import sys

import numpy as np
import torch
import transformers
from transformers import AutoModelForCausalLM

MODELS = ("tiny-llama", "tiny-qwen3", "tiny-mistral", "tiny-phi3", "tiny-gemma2", "tiny-gemma3",
          "tiny-qwen3-yarn", "tiny-qwen3-moe", "tiny-mixtral", "tiny-qwen3-fp8", "tiny-qwen2-moe")
# Fixed ids covering low, high and repeated tokens of a 256-token vocabulary.
IDS = [1, 17, 42, 255, 0, 128, 7, 7, 99, 200, 3, 64, 31, 250, 5, 77, 18, 142, 9, 233, 60, 2, 111, 45]


def load(path, device):
    kwargs = {"attn_implementation": "eager"}
    with open(os.path.join(path, "config.json")) as f:
        cfg = json.load(f)
    if cfg.get("num_experts") or cfg.get("num_local_experts"):
        # The per-expert loop (transformers >= 5), not a grouped GEMM that may drop to lower
        # precision on the GPU.
        kwargs["experts_implementation"] = "eager"
    if (cfg.get("quantization_config") or {}).get("quant_method") == "fp8":
        # Weights dequantized at load (value * weight_scale_inv in float32), activations kept in
        # float32: what invar computes. Without it, transformers runs fp8 GEMMs on the GPU and
        # quantizes the activations too.
        from transformers import FineGrainedFP8Config
        kwargs["quantization_config"] = FineGrainedFP8Config(
            dequantize=True, weight_block_size=tuple(cfg["quantization_config"]["weight_block_size"]))
    try:  # transformers >= 4.56 names it `dtype`; older ones only know `torch_dtype`
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, **kwargs)
    except TypeError:
        model = AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.float32, **kwargs)
    return model.to(device).eval()


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join("tests", "data")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    names = sys.argv[2:] or MODELS
    for name in names:
        path = os.path.join(root, name)
        model = load(path, device)
        vocab = model.config.vocab_size
        assert max(IDS) < vocab, f"{name}: ids exceed the vocabulary ({vocab})"
        with torch.no_grad():
            ids = torch.tensor([IDS], dtype=torch.long, device=device)
            logits = model(input_ids=ids, use_cache=False).logits[0]
        out = logits.float().cpu().numpy().astype("<f4")
        assert out.shape == (len(IDS), vocab) and np.isfinite(out).all()
        out.tofile(os.path.join(path, "golden_logits.f32"))
        with open(os.path.join(path, "golden_ids.json"), "w") as f:
            f.write(json.dumps(IDS) + "\n")
        info = {"model": name, "tokens": len(IDS), "vocab_size": vocab, "device": device,
                "torch": torch.__version__, "transformers": transformers.__version__,
                "dtype": "float32", "attention": "eager", "tf32": False}
        with open(os.path.join(path, "golden_info.json"), "w") as f:
            json.dump(info, f, indent=2, sort_keys=True)
            f.write("\n")
        print(f"{name}: logits {out.shape} on {device}, argmax of last row {int(out[-1].argmax())}")


if __name__ == "__main__":
    main()
