// Subcommands of the `invar` command line. Each registers itself on the app and records its
// exit status.
#pragma once

#include <CLI/CLI.hpp>
#include <optional>
#include <string>

#include "core/dtype.h"
#include "model/model_runner.h"

namespace invar::cli {

void add_generate(CLI::App& app);
void add_serve(CLI::App& app);
void add_chat(CLI::App& app);
// `invar bench` and its subcommands (serve: a load generator against a running server).
void add_bench(CLI::App& app);
// `invar verify`: batch-invariance audit, in-process (--model) or of a server (--url).
void add_verify(CLI::App& app);

// Host storage of the weight matrices: `flag` (f32 or bf16) when given, else unset: the file's
// own encoding (GGUF tensors stay as stored, packed blocks included, in the file's mapping; the
// CPU kernels decode them as they read them, CUDA dequantizes them to bf16 at upload).
inline std::optional<DType> weight_dtype_flag(const std::string& flag) {
  if (flag == "bf16") return DType::bf16;
  if (flag == "f32") return DType::f32;
  return std::nullopt;
}

// Seeded random weights have no file to take a type from: `flag`, else f32 for the CPU (its
// exact reference) and bf16 for CUDA (what the GPU kernels read).
inline DType random_weight_dtype(const std::string& flag, model::Device device) {
  return weight_dtype_flag(flag).value_or(device == model::Device::cuda ? DType::bf16 : DType::f32);
}

// The CPU KV cache's element type from a --kv-dtype flag (f16 or f32; empty: f16).
inline DType kv_dtype_flag(const std::string& flag) {
  return flag == "f32" ? DType::f32 : DType::f16;
}

// The exit status set by the subcommand that ran.
int exit_code();
void set_exit_code(int code);

}  // namespace invar::cli
