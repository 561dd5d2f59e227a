// Subcommands of the `invar` command line. Each registers itself on the app and records its
// exit status.
#pragma once

#include <CLI/CLI.hpp>
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

// Host storage of the weight matrices: `flag` (f32 or bf16) when given, else f32 for the CPU
// (its exact reference) and bf16 for CUDA (what the GPU kernels read; half the host memory).
inline DType default_weight_dtype(const std::string& flag, model::Device device) {
  if (flag == "bf16") return DType::bf16;
  if (flag == "f32") return DType::f32;
  return device == model::Device::cuda ? DType::bf16 : DType::f32;
}

// The exit status set by the subcommand that ran.
int exit_code();
void set_exit_code(int code);

}  // namespace invar::cli
