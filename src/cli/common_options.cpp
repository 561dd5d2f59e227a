#include "cli/common_options.h"

#include <filesystem>

#include "cli/progress_bar.h"
#include "engine/model_runner_factory.h"
#include "model/config_parse.h"
#include "model/tensor_parallel.h"

namespace invar::cli {

void add_model_options(CLI::App& cmd, ModelArgs& a, unsigned which, const std::string& group) {
  auto grouped = [&](CLI::Option* o) {
    if (!group.empty()) o->group(group);
    return o;
  };
  if (which & kModelPath)
    grouped(cmd.add_option("-m,--model", a.model,
                           "GGUF file or Hugging Face directory (with --random-weights: a "
                           "config.json or its directory)"))
        ->required();
  grouped(cmd.add_option("--device", a.device, "cpu or cuda (a build with -DINVAR_CUDA=ON)"))
      ->check(CLI::IsMember({"cpu", "cuda"}));
  if (which & kKernelMode)
    grouped(cmd.add_option("--kernels", a.kernels,
                           "invariant, or fast: batch-dependent kernels, a negative control only"))
        ->check(CLI::IsMember({"invariant", "fast"}));
  grouped(cmd.add_option("-t,--threads", a.threads, "CPU threads (0 = all cores)"))
      ->check(CLI::NonNegativeNumber);
  grouped(cmd.add_option("--weight-dtype", a.weight_dtype,
                         "Weight storage: f32 or bf16 (empty: as stored in the file, quantized "
                         "GGUF blocks packed; random weights: f32 on the CPU, bf16 on CUDA)"))
      ->check(CLI::IsMember({"", "f32", "bf16"}));
  grouped(cmd.add_option("--random-weights", a.random_weights,
                         "Seeded random weights of the --model config (-1: off)"))
      ->check(CLI::Range(int64_t(-1), int64_t(INT32_MAX)));
  if (which & kEngineSize) {
    grouped(cmd.add_option("-c,--context,--max-context", a.context,
                           "Most prompt + completion tokens of one request"))
        ->check(CLI::Range(16, 1 << 20));
    grouped(cmd.add_option("--gpu-memory-utilization", a.gpu_memory_utilization,
                           "CUDA: share of the GPU's memory to use; the KV cache gets what "
                           "weights and activations leave (as vLLM)"))
        ->check(CLI::Range(0.05, 1.0));
    grouped(cmd.add_option("--kv-dtype", a.kv_dtype, "CPU KV cache: f16 or f32 (empty: f16)"))
        ->check(CLI::IsMember({"", "f16", "f32"}));
  }
  if (which & kTensorParallel) {
    grouped(cmd.add_option("--tensor-parallel-size", a.tensor_parallel_size,
                           "Tensor-parallel ranks, threads of this process (1, 2, 4, 8; the "
                           "same bits at every size, docs/tensor-parallel.md). CPU: they share "
                           "--threads; CUDA: rank r on GPU r, or all on one GPU when fewer are "
                           "visible"))
        ->check(CLI::Range(1, 64));
    grouped(cmd.add_flag("--tp-invariant-slices", a.tp_invariant_slices,
                         "At --tensor-parallel-size 1: the sliced row-parallel GEMMs, whose bits "
                         "every size gives (sizes > 1 always use them; slower, other bits than "
                         "the default)"));
  }
}

void add_sampling_options(CLI::App& cmd, SamplingArgs& a) {
  cmd.add_option("--temperature,--temp", a.temperature, "0 = greedy")
      ->check(CLI::Range(0.0, 100.0));
  cmd.add_option("--top-k", a.top_k, "0 = off")->check(CLI::NonNegativeNumber);
  cmd.add_option("--top-p", a.top_p, "1 = off")->check(CLI::Range(0.0, 1.0));
  cmd.add_option("--min-p", a.min_p, "0 = off")->check(CLI::Range(0.0, 1.0));
  cmd.add_option("--repetition-penalty", a.repetition_penalty, "1 = off")
      ->check(CLI::Range(0.01, 10.0));
  cmd.add_option("-s,--seed", a.seed, "Seed of the sampler (same seed, same tokens)")
      ->each([&a](const std::string&) { a.seed_given = true; });
}

void apply_sampling(const SamplingArgs& a, engine::RequestParams& req, uint64_t seed_offset) {
  req.sampling = {a.temperature, a.top_k, a.top_p, a.min_p, a.seed + seed_offset};
  req.has_seed = a.seed_given;
  req.repetition_penalty = a.repetition_penalty;
}

std::optional<DType> weight_dtype_flag(const std::string& flag) {
  if (flag == "bf16") return DType::bf16;
  if (flag == "f32") return DType::f32;
  return std::nullopt;
}

DType random_weight_dtype(const std::string& flag, model::Device device) {
  return weight_dtype_flag(flag).value_or(device == model::Device::cuda ? DType::bf16 : DType::f32);
}

Result<engine::ModelBundle> open_bundle(const ModelArgs& a, model::Device device) {
  // A Hugging Face config the device cannot run is refused before its weights are read or
  // generated (a 30B mixture of experts takes minutes and most of the memory to make).
  namespace fs = std::filesystem;
  if (device != model::Device::cpu &&
      (a.random_weights >= 0 || fs::exists(fs::path(a.model) / "config.json"))) {
    INVAR_ASSIGN_OR_RETURN(model::ModelConfig config, model::read_hf_config(a.model));
    INVAR_RETURN_IF_ERROR(engine::check_device_config(config, device));
  }
  model::LoadOptions load;
  // A bar for models past ~270 M weights (seconds to read, check and convert); the default model
  // loads before one would be seen.
  ProgressBar bar("loading weights", int64_t(1) << 28);
  load.progress = [&bar](int64_t done, int64_t total) { bar.update(done, total); };
  if (a.random_weights >= 0) {
    load.weight_dtype = random_weight_dtype(a.weight_dtype, device);
    return engine::random_model(a.model, uint64_t(a.random_weights), load);
  }
  load.weight_dtype = weight_dtype_flag(a.weight_dtype);
  return engine::open_model(a.model, load);
}

engine::EngineOptions engine_options(const ModelArgs& a, model::Device device) {
  engine::EngineOptions o;
  o.threads = a.threads;
  o.tensor_parallel_size = a.tensor_parallel_size;
  o.tp_slices = a.tp_invariant_slices ? model::kDefaultTpSlices : -1;
  o.max_context = a.context;
  o.device = device;
  o.gpu_memory_utilization = a.gpu_memory_utilization;
  o.kv_dtype = a.kv_dtype == "f32" ? DType::f32 : DType::f16;
  o.kernels = a.kernels == "fast" ? kernels::KernelMode::fast : kernels::KernelMode::invariant;
  return o;
}

}  // namespace invar::cli
