// What tensor parallelism's fixed slice tree costs at size 1: whole forward steps of one model
// with the plain row-parallel GEMMs (o_proj, down_proj over all of K in one GEMM, the default)
// vs the same GEMMs cut into 8 K slices summed in the fixed tree (--tp-invariant-slices), side
// by side in one run, interleaved. Decode steps of 1 and 8 sequences (one token each, 64 cached)
// and prefill steps of 64 and 256 tokens (on CUDA also decode of 64 sequences and a prefill of
// 2048); the median of timed repetitions after a warm-up. On CUDA both replay CUDA graphs.
//   usage: bench_tp_slices MODEL [--threads N] [--weight-dtype f32|bf16] [--seconds S]
//                          [--device cpu|cuda] [--random-weights SEED]  (MODEL: its config)
#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "engine/model_runner_factory.h"
#include "model/config_parse.h"
#include "model/tensor_parallel.h"

using namespace invar;
using Clock = std::chrono::steady_clock;

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// `seqs` sequences of `tokens` tokens each, after `cached` positions.
model::BatchPlan step_plan(int seqs, int tokens, int cached, int vocab) {
  constexpr int kBlock = 16;
  const int blocks = (cached + tokens + kBlock - 1) / kBlock;
  model::BatchPlanBuilder b(kBlock, blocks);
  for (int s = 0; s < seqs; ++s) {
    std::vector<int32_t> ids(static_cast<size_t>(tokens)), table;
    for (int t = 0; t < tokens; ++t) ids[size_t(t)] = (s * 7919 + t * 104729) % vocab;
    for (int k = 0; k < blocks; ++k) table.push_back(s * blocks + k);
    b.add_sequence(ids, cached, table, model::LogitRows::last);
  }
  return b.build();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    fmt::print(stderr,
               "usage: {} MODEL [--threads N] [--weight-dtype f32|bf16] [--seconds S] "
               "[--device cpu|cuda] [--random-weights SEED]\n",
               argv[0]);
    return 2;
  }
  int threads = 0;
  double seconds = 2.0;
  model::LoadOptions load;
  model::Device device = model::Device::cpu;
  int64_t random_seed = -1;
  for (int i = 2; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--device"))
      device = std::string(argv[i + 1]) == "cuda" ? model::Device::cuda : model::Device::cpu;
    if (!std::strcmp(argv[i], "--random-weights")) random_seed = std::stoll(argv[i + 1]);
    if (!std::strcmp(argv[i], "--threads")) threads = std::stoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--seconds")) seconds = std::stod(argv[i + 1]);
    if (!std::strcmp(argv[i], "--weight-dtype"))
      load.weight_dtype = std::string(argv[i + 1]) == "bf16" ? DType::bf16 : DType::f32;
  }
  Result<model::LoadedModel> m = Status::error("unloaded");
  if (random_seed >= 0) {
    auto config = model::read_hf_config(argv[1]);
    if (!config.ok()) {
      fmt::print(stderr, "{}\n", config.status().message());
      return 1;
    }
    m = model::LoadedModel{*config,
                           model::random_weights(*config, uint64_t(random_seed),
                                                 load.weight_dtype.value_or(DType::bf16)),
                           argv[1]};
  } else {
    m = model::load_model(argv[1], load);
  }
  if (!m.ok()) {
    fmt::print(stderr, "{}\n", m.status().message());
    return 1;
  }
  const model::ModelConfig& config = m.value().config;
  if (Status st = model::check_tensor_parallel(config, 1, model::kDefaultTpSlices); !st.ok()) {
    fmt::print(stderr, "{}\n", st.message());
    return 1;
  }
  model::RunnerOptions o;
  o.device = device;
  o.kv_blocks = 64 * 144;  // 64 sequences of 2304 positions
  o.block_size = 16;
  o.threads = threads;
  o.tp_slices = 0;
  auto plain = engine::make_model_runner(config, m.value().weights, o);
  o.tp_slices = model::kDefaultTpSlices;
  auto sliced = engine::make_model_runner(config, m.value().weights, o);
  if (!plain.ok() || !sliced.ok()) return 1;

  fmt::print(
      "{} device={} threads={} weights={}\n", argv[1], model::device_name(device),
      ThreadPool::size_for(threads),
      load.weight_dtype ? std::string(dtype_name(*load.weight_dtype)) : std::string("as stored"));
  fmt::print("{:<22} {:>12} {:>12} {:>8}\n", "step", "plain ms", "sliced ms", "ratio");
  struct Shape {
    const char* name;
    int seqs, tokens, cached;
  };
  std::vector<Shape> shapes{{"decode 1 x 1 (@64)", 1, 1, 64},
                            {"decode 8 x 1 (@64)", 8, 1, 64},
                            {"prefill 1 x 64", 1, 64, 0},
                            {"prefill 1 x 256", 1, 256, 0}};
  if (device == model::Device::cuda) {
    shapes.push_back({"decode 64 x 1 (@256)", 64, 1, 256});
    shapes.push_back({"prefill 1 x 2048", 1, 2048, 0});
  }
  for (const Shape& s : shapes) {
    const model::BatchPlan plan = step_plan(s.seqs, s.tokens, s.cached, config.vocab_size);
    std::vector<float> logits;
    std::vector<double> tp, ts;
    auto timed = [&](model::ModelRunner& r) {
      const auto t0 = Clock::now();
      if (!r.forward(plan, logits).ok()) std::abort();
      return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    };
    timed(*plain.value());
    timed(*sliced.value());
    const auto start = Clock::now();
    while (tp.size() < 5 ||
           (std::chrono::duration<double>(Clock::now() - start).count() < seconds &&
            tp.size() < 500)) {
      tp.push_back(timed(*plain.value()));  // interleaved: both see the same machine load
      ts.push_back(timed(*sliced.value()));
    }
    const double a = median(tp), b = median(ts);
    fmt::print("{:<22} {:>12.3f} {:>12.3f} {:>7.3f}x\n", s.name, a, b, b / a);
  }
  return 0;
}
