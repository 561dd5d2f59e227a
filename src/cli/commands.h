// Subcommands of the `invar` command line. Each registers itself on the app and records its
// exit status.
#pragma once

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <string>

#include "core/dtype.h"
#include "model/model_runner.h"
#include "tokenizer/tokenizer.h"

namespace invar::cli {

void add_generate(CLI::App& app);
void add_serve(CLI::App& app);
void add_chat(CLI::App& app);
// `invar bench` and its subcommands (serve: a load generator against a running server).
void add_bench(CLI::App& app);
// `invar verify`: batch-invariance audit, in-process (--model) or of a server (--url).
void add_verify(CLI::App& app);

// --chat-template FILE: a Jinja chat template that replaces the model's own.
void add_chat_template_option(CLI::App* cmd, std::string* path);
// --chat-template-kwargs JSON: extra template variables (Qwen3's enable_thinking, ...).
void add_chat_template_kwargs_option(CLI::App* cmd, std::string* json_text);
// Installs the file's template in `tok` (nothing when `path` is empty); fails if it does not
// parse, naming the file.
Status use_chat_template_file(const std::string& path, tokenizer::Tokenizer& tok);
// The --chat-template-kwargs object (null when the option was not given).
Result<nlohmann::ordered_json> parse_chat_template_kwargs(const std::string& json_text);

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
