// The options the subcommands share, defined once so that a flag means the same thing, with the
// same default, everywhere: the model and engine (generate, chat, serve, verify) and sampling
// (generate, chat).
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "core/status.h"
#include "engine/engine.h"
#include "engine/model_bundle.h"
#include "model/model_runner.h"
#include "tokenizer/tokenizer.h"

namespace invar::cli {

struct ModelArgs {
  std::string model;           // GGUF file, Hugging Face directory, or a config (random weights)
  std::string device = "cpu";  // cpu | cuda
  std::string kernels = "invariant";
  std::string weight_dtype;      // f32 | bf16; empty: as stored in the file (random: per device)
  std::string kv_dtype;          // CPU KV cache: f16 | f32; empty: f16
  int threads = 0;               // CPU threads, 0 = all cores
  int tensor_parallel_size = 1;  // ranks as threads
  bool tp_invariant_slices = false;  // the sliced row-parallel GEMMs at size 1 too
  int context = 4096;                // prompt + output tokens per request
  double gpu_memory_utilization = 0.9;
  int64_t random_weights = -1;  // >= 0: seeded random weights of the --model config
};

// Which of the shared options a subcommand takes (verify names its model and kernel modes its
// own way, and runs no engine).
enum ModelOption : unsigned {
  kModelPath = 1u << 0,       // -m/--model, required
  kKernelMode = 1u << 1,      // --kernels invariant|fast
  kEngineSize = 1u << 2,      // -c/--context, --gpu-memory-utilization, --kv-dtype
  kTensorParallel = 1u << 3,  // --tensor-parallel-size, --tp-invariant-slices
  kAllModelOptions = kModelPath | kKernelMode | kEngineSize | kTensorParallel,
};

// Adds -t/--threads, --device, --weight-dtype, --random-weights and those of `which`, in
// `group` (empty: the subcommand's default group).
void add_model_options(CLI::App& cmd, ModelArgs& a, unsigned which = kAllModelOptions,
                       const std::string& group = "");

// The model of `a`: its file, or seeded random weights of its config.
Result<engine::ModelBundle> open_bundle(const ModelArgs& a, model::Device device);

// Engine options from the shared flags; a subcommand sets its own (max_running, ...) after.
engine::EngineOptions engine_options(const ModelArgs& a, model::Device device);

struct SamplingArgs {
  float temperature = 0.0f;
  int top_k = 0;
  float top_p = 1.0f;
  float min_p = 0.0f;
  float repetition_penalty = 1.0f;
  uint64_t seed = 0;
  bool seed_given = false;
};

// --temperature/--temp, --top-k, --top-p, --min-p, --repetition-penalty, -s/--seed.
void add_sampling_options(CLI::App& cmd, SamplingArgs& a);

// Sets the request's sampling from `a`, with `seed_offset` added to the seed (chat: one seed
// per conversation, offset per turn, so a replayed chat gives the same answers).
void apply_sampling(const SamplingArgs& a, engine::RequestParams& req, uint64_t seed_offset = 0);

// --chat-template FILE: a Jinja chat template that replaces the model's own.
void add_chat_template_option(CLI::App* cmd, std::string* path);
// --chat-template-kwargs JSON: extra template variables (Qwen3's enable_thinking, ...).
void add_chat_template_kwargs_option(CLI::App* cmd, std::string* json_text);
// Installs the file's template in `tok` (nothing when `path` is empty); fails if it does not
// parse, naming the file.
Status use_chat_template_file(const std::string& path, tokenizer::Tokenizer& tok);
// The --chat-template-kwargs object (null when the option was not given).
Result<nlohmann::ordered_json> parse_chat_template_kwargs(const std::string& json_text);

// Host storage of the weight matrices from a --weight-dtype flag (f32 or bf16); empty: unset, the
// file's own encoding (GGUF tensors stay as stored, packed blocks included, in the file's
// mapping; the CPU kernels decode them as they read them, CUDA dequantizes them to bf16).
std::optional<DType> weight_dtype_flag(const std::string& flag);

// Seeded random weights have no file to take a type from: the flag, else f32 for the CPU (its
// exact reference) and bf16 for CUDA (what the GPU kernels read).
DType random_weight_dtype(const std::string& flag, model::Device device);

}  // namespace invar::cli
