// The CUDA backend against the CPU backend, whole models (issue: model on the GPU): the logits
// of every position of a prompt, run once prefilled and once chunked, on both backends. The CPU
// runs f32 weights and activations; CUDA runs bf16 weights and activations with an f32
// residual, so they agree within bf16 tolerance, not in bits.
// Also checks that chunking changes no bit on CUDA in invariant mode and that fast mode does,
// that CUDA-graph replays give the bits of eager launches, and the KV cache sized from GPU
// memory (--gpu-memory-utilization).
// Skips without a GPU unless INVAR_REQUIRE_GPU=1; SmolLM2 needs the fetched model (INVAR_MODEL).
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "engine/model_bundle.h"
#include "engine/model_runner_factory.h"
#include "model/config_parse.h"
#include "model/tensor_parallel.h"
#include "test_paths.h"

namespace invar {
namespace {

constexpr int kBlock = 16;

bool have_gpu() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

void require_gpu() {
  if (have_gpu()) return;
  if (std::getenv("INVAR_REQUIRE_GPU")) FAIL() << "INVAR_REQUIRE_GPU is set and no GPU is visible";
  GTEST_SKIP() << "no GPU";
}

std::unique_ptr<model::ModelRunner> runner(const model::LoadedModel& m, model::Device device,
                                           kernels::KernelMode mode, int max_tokens) {
  model::RunnerOptions o;
  o.device = device;
  o.kernels = mode;
  o.threads = int(std::max(1u, std::thread::hardware_concurrency()));
  o.block_size = kBlock;
  o.kv_blocks = (max_tokens + kBlock - 1) / kBlock;
  auto r = engine::make_model_runner(m.config, m.weights, o);
  EXPECT_TRUE(r.ok()) << r.status().message();
  return r.ok() ? std::move(r).value() : nullptr;
}

// Logits [tokens, V] of every position, the prompt fed in chunks of `chunk`.
std::vector<float> all_logits(model::ModelRunner& r, const std::vector<int32_t>& tokens, int chunk) {
  const int blocks = (int(tokens.size()) + kBlock - 1) / kBlock;
  std::vector<int32_t> table(static_cast<size_t>(blocks));
  for (int b = 0; b < blocks; ++b) table[size_t(b)] = blocks - 1 - b;  // ids need not be ordered
  std::vector<float> out, logits;
  for (size_t start = 0; start < tokens.size(); start += size_t(chunk)) {
    const size_t n = std::min(size_t(chunk), tokens.size() - start);
    model::BatchPlanBuilder b(kBlock, blocks);
    b.add_sequence(std::span<const int32_t>(tokens).subspan(start, n), int32_t(start), table,
                   model::LogitRows::all);
    Status st = r.forward(b.build(), logits);
    EXPECT_TRUE(st.ok()) << st.message();
    out.insert(out.end(), logits.begin(), logits.end());
  }
  return out;
}

struct Agreement {
  double worst_rel_l2 = 0;   // max over rows of |gpu - cpu|_2 / |cpu|_2
  double mean_rel_l2 = 0;
  double top1 = 0;           // rows whose argmax agrees
};

Agreement compare(const std::vector<float>& gpu, const std::vector<float>& cpu, int vocab) {
  Agreement a;
  const size_t rows = cpu.size() / size_t(vocab);
  int same = 0;
  for (size_t r = 0; r < rows; ++r) {
    const float* g = gpu.data() + r * size_t(vocab);
    const float* c = cpu.data() + r * size_t(vocab);
    double diff = 0, norm = 0;
    for (int i = 0; i < vocab; ++i) {
      diff += (double(g[i]) - c[i]) * (double(g[i]) - c[i]);
      norm += double(c[i]) * c[i];
    }
    const double rel = std::sqrt(diff / std::max(norm, 1e-30));
    a.worst_rel_l2 = std::max(a.worst_rel_l2, rel);
    a.mean_rel_l2 += rel / double(rows);
    same += std::max_element(g, g + vocab) == g + (std::max_element(c, c + vocab) - c);
  }
  a.top1 = double(same) / double(rows);
  return a;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * 4) == 0;
}

// Runs the whole comparison for one model; `tokens` is the prompt.
void check_model(const model::LoadedModel& m, const std::vector<int32_t>& tokens,
                 double max_mean_rel, double min_top1) {
  const int vocab = m.config.vocab_size, n = int(tokens.size());
  auto cpu = runner(m, model::Device::cpu, kernels::KernelMode::invariant, n);
  auto gpu = runner(m, model::Device::cuda, kernels::KernelMode::invariant, n);
  auto fast = runner(m, model::Device::cuda, kernels::KernelMode::fast, n);
  ASSERT_TRUE(cpu && gpu && fast);
  const auto ref = all_logits(*cpu, tokens, n);
  const auto whole = all_logits(*gpu, tokens, n);
  ASSERT_EQ(whole.size(), ref.size());
  const Agreement a = compare(whole, ref, vocab);
  std::printf("  %s: %d positions, CUDA vs CPU logits: mean rel L2 %.4f, worst %.4f, top-1 %.3f\n",
              m.source.c_str(), n, a.mean_rel_l2, a.worst_rel_l2, a.top1);
  EXPECT_LT(a.mean_rel_l2, max_mean_rel);
  EXPECT_GE(a.top1, min_top1);

  // Invariant: chunked prefill gives the same bits as one prefill; fast: it does not (R8).
  int differing_chunkings = 0;
  const auto fast_whole = all_logits(*fast, tokens, n);
  const Agreement f = compare(fast_whole, ref, vocab);
  std::printf("  fast mode vs CPU: mean rel L2 %.4f, top-1 %.3f\n", f.mean_rel_l2, f.top1);
  for (int chunk : {1, 7, 16, 64}) {
    if (chunk >= n) continue;
    EXPECT_TRUE(same_bits(whole, all_logits(*gpu, tokens, chunk))) << "chunk " << chunk;
    differing_chunkings += !same_bits(fast_whole, all_logits(*fast, tokens, chunk));
  }
  std::printf("  fast mode: %d chunkings differ from one prefill\n", differing_chunkings);
  EXPECT_GT(differing_chunkings, 0) << "the negative control found no difference in fast mode";
}

std::vector<int32_t> random_tokens(int n, int vocab, uint64_t seed) {
  std::vector<int32_t> t;
  uint64_t x = seed;
  for (int i = 0; i < n; ++i) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    t.push_back(int32_t((x >> 33) % uint64_t(vocab)));
  }
  return t;
}

TEST(CudaModel, SmolLM2LogitsMatchCpuAndChunkingKeepsBits) {
  require_gpu();
  const std::string path = testing::default_model_path();
  if (path.empty()) GTEST_SKIP() << "default model not fetched (INVAR_MODEL)";
  auto b = engine::open_model(path, {});
  ASSERT_TRUE(b.ok()) << b.status().message();
  const auto sentence = b->tokenizer.encode(
      "The capital of France is Paris. The capital of Germany is Berlin, and the capital of Italy "
      "is Rome; the capital of Spain is Madrid. Water boils at one hundred degrees Celsius at sea "
      "level, and the tallest mountain on Earth is",
      false, false);
  // Over 256 tokens, so fast mode's RMSNorm changes block size between chunks and one prefill
  // (at SmolLM2's width cuBLAS keeps one recipe for every M: the control needs the norm).
  std::vector<int32_t> tokens;
  while (tokens.size() < 300) tokens.insert(tokens.end(), sentence.begin(), sentence.end());
  check_model(b->model, tokens, 0.05, 0.9);
}

// Random weights of real shapes: Qwen3 (q/k norm, head dim 128) and Qwen2.5 (q/k/v bias, GQA 7).
void check_random(const std::string& config_dir, int tokens, double max_mean_rel = 0.05,
                  double min_top1 = 0.9) {
  require_gpu();
  auto config = model::read_hf_config(testing::test_data(config_dir));
  ASSERT_TRUE(config.ok()) << config.status().message();
  model::LoadedModel m{*config, model::random_weights(*config, 7, DType::bf16),
                       config_dir + " (random weights)"};
  check_model(m, random_tokens(tokens, config->vocab_size, 11), max_mean_rel, min_top1);
}

TEST(CudaModel, RandomQwen3LogitsMatchCpu) { check_random("cuda/qwen3-0.6b", 300); }
TEST(CudaModel, RandomQwen25WithBiasLogitsMatchCpu) { check_random("cuda/qwen2.5-0.5b", 300); }

// Mixture-of-experts layers (the grouped-GEMM MLP; qwen3-moe-small has one dense layer too).
// CUDA routes on bf16 activations, the CPU on f32: a token whose k-th and (k+1)-th experts are
// nearly tied may take another expert, so the agreement bar is looser than the dense models'.
TEST(CudaModel, RandomQwen3MoeLogitsMatchCpu) {
  check_random("cuda/qwen3-moe-small", 300, 0.15, 0.8);
}
TEST(CudaModel, RandomMixtralLogitsMatchCpu) { check_random("cuda/mixtral-small", 300, 0.15, 0.8); }

// What the CUDA pass does not implement is refused before it runs, naming the feature and the
// way out, never computed wrong: Gemma's soft-caps, post norms, GeGLU and per-layer ropes, and
// YaRN.
TEST(CudaModel, GemmaAndYarnAreRefusedWithAClearError) {
  require_gpu();
  for (auto [name, feature] : {std::pair{"tiny-gemma2", "attention soft-capping"},
                               std::pair{"tiny-gemma3", "a separate rope for sliding layers"},
                               std::pair{"tiny-qwen3-yarn", "yarn rope scaling"},
                               std::pair{"tiny-qwen2-moe", "a shared expert"}}) {
    auto m = model::load_model(testing::test_data(name), {});
    ASSERT_TRUE(m.ok()) << m.status().message();
    model::RunnerOptions o;
    o.device = model::Device::cuda;
    o.block_size = kBlock;
    o.kv_blocks = 4;
    auto r = engine::make_model_runner(m->config, m->weights, o);
    ASSERT_FALSE(r.ok()) << name << " was accepted by the CUDA runner";
    const std::string& msg = r.status().message();
    EXPECT_NE(msg.find(feature), std::string::npos) << msg;
    EXPECT_NE(msg.find("--device cpu"), std::string::npos) << msg;
  }
}

}  // namespace
}  // namespace invar

namespace invar {
namespace {

// --gpu-memory-utilization: with kv_blocks = 0 the runner sizes the KV cache from what the share
// of device memory leaves after weights and the largest step's activations; a larger share gives
// more blocks, none past the share; too small a share is a clear error, not an out-of-memory.
TEST(CudaModel, KvCacheSizedFromGpuMemory) {
  require_gpu();
  auto config = model::read_hf_config(testing::test_data("cuda/qwen2.5-0.5b"));
  ASSERT_TRUE(config.ok()) << config.status().message();
  const model::ModelWeights w = model::random_weights(*config, 7, DType::bf16);
  auto sized = [&](double share) {
    model::RunnerOptions o;
    o.device = model::Device::cuda;
    o.block_size = kBlock;
    o.kv_blocks = 0;
    o.gpu_memory_utilization = share;
    o.max_step_tokens = 512;
    o.max_step_seqs = 64;
    o.max_blocks_per_seq = 256;
    return engine::make_model_runner(*config, w, o);
  };
  size_t free_bytes = 0, total_bytes = 0;
  ASSERT_EQ(cudaMemGetInfo(&free_bytes, &total_bytes), cudaSuccess);
  const double block_bytes = 2.0 * config->num_layers * kBlock * config->num_kv_heads *
                             config->head_dim * 2.0;
  int blocks_small = 0;
  {
    auto r = sized(0.3);
    ASSERT_TRUE(r.ok()) << r.status().message();
    blocks_small = (*r)->kv_blocks();
    EXPECT_GT(blocks_small, 0);
    EXPECT_LE(blocks_small * block_bytes, 0.3 * double(total_bytes));
  }
  {
    auto r = sized(0.6);
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_GT((*r)->kv_blocks(), blocks_small);
    EXPECT_LE((*r)->kv_blocks() * block_bytes, 0.6 * double(total_bytes));
  }
  auto tiny = sized(0.001);
  ASSERT_FALSE(tiny.ok());
  EXPECT_NE(tiny.status().message().find("gpu-memory-utilization"), std::string::npos)
      << tiny.status().message();
  auto bad = sized(1.5);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("(0, 1]"), std::string::npos) << bad.status().message();
}

}  // namespace
}  // namespace invar

namespace invar {
namespace {

// A prefill then greedy decode steps of one sequence (every step a new position; most decode
// steps share a launch shape, so the graph runner replays), with three other sequences decoding
// beside it from step 10 on: the logits of every step, the sequence's own rows only.
std::vector<float> decode_logits(model::ModelRunner& r, const std::vector<int32_t>& prompt,
                                 int steps, int vocab) {
  const int max_blocks = 32;
  std::vector<int32_t> table(max_blocks), other(max_blocks * 3);
  for (int b = 0; b < max_blocks; ++b) table[size_t(b)] = b;
  for (size_t b = 0; b < other.size(); ++b) other[b] = max_blocks + int32_t(b);
  std::vector<float> out, logits;
  std::vector<int32_t> tokens = prompt;
  for (int s = 0; s <= steps; ++s) {
    model::BatchPlanBuilder b(kBlock, max_blocks);
    const size_t start = s == 0 ? 0 : tokens.size() - 1;
    b.add_sequence(std::span<const int32_t>(tokens).subspan(start), int32_t(start), table,
                   model::LogitRows::last);
    if (s >= 10) {
      for (int o = 0; o < 3; ++o) {
        const std::vector<int32_t> one{int32_t((s * 7 + o) % vocab)};
        b.add_sequence(one, s - 10, std::span<const int32_t>(other).subspan(size_t(o) * max_blocks, max_blocks),
                       model::LogitRows::last);
      }
    }
    Status st = r.forward(b.build(), logits);
    EXPECT_TRUE(st.ok()) << st.message();
    if (!st.ok()) break;
    out.insert(out.end(), logits.begin(), logits.begin() + vocab);
    tokens.push_back(int32_t(std::max_element(logits.begin(), logits.begin() + vocab) - logits.begin()));
  }
  return out;
}

// CUDA graphs (captured once per launch shape, then replayed) give the bits of eager launches,
// in both kernel modes.
TEST(CudaModel, GraphsGiveTheBitsOfEagerLaunches) {
  require_gpu();
  auto config = model::read_hf_config(testing::test_data("cuda/qwen3-0.6b"));
  ASSERT_TRUE(config.ok()) << config.status().message();
  model::LoadedModel m{*config, model::random_weights(*config, 7, DType::bf16), "qwen3-0.6b"};
  const auto prompt = random_tokens(37, config->vocab_size, 5);
  for (auto mode : {kernels::KernelMode::invariant, kernels::KernelMode::fast}) {
    std::vector<float> results[2];
    for (int graphs = 0; graphs < 2; ++graphs) {
      model::RunnerOptions o;
      o.device = model::Device::cuda;
      o.kernels = mode;
      o.block_size = kBlock;
      o.kv_blocks = 32 * 4;
      o.cuda_graphs = graphs == 1;
      o.pad_graph_batches = false;  // graphs alone here; padding has its own test below
      auto r = engine::make_model_runner(m.config, m.weights, o);
      ASSERT_TRUE(r.ok()) << r.status().message();
      results[graphs] = decode_logits(**r, prompt, 40, config->vocab_size);
    }
    ASSERT_EQ(results[0].size(), results[1].size());
    EXPECT_TRUE(std::memcmp(results[0].data(), results[1].data(), results[0].size() * 4) == 0)
        << kernels::kernel_mode_name(mode) << ": graph replays changed bits";
  }
}

// Tensor parallelism on one GPU (docs/tensor-parallel.md): ranks that are threads, each with its
// shard, stream and KV cache, all on this GPU. The logits of a prefill, a chunked prefill and
// greedy decode steps among other sequences are the same bits at sizes 1 (sliced), 2, 4 and 8.
// Controls: the plain one-GPU runner (no slices) gives other bits, and so does size 2 when each
// rank reduces its whole K range (what tensor parallelism usually does).
TEST(CudaModel, TensorParallelSizesGiveTheSameBitsOnOneGpu) {
  require_gpu();
  auto config = model::read_hf_config(testing::test_data("cuda/qwen3-0.6b"));
  ASSERT_TRUE(config.ok()) << config.status().message();
  model::LoadedModel m{*config, model::random_weights(*config, 7, DType::bf16), "qwen3-0.6b"};
  const int vocab = config->vocab_size;
  const auto prompt = random_tokens(37, vocab, 5);
  auto logits = [&](int size, int slices) {
    model::RunnerOptions o;
    o.device = model::Device::cuda;
    o.block_size = kBlock;
    o.kv_blocks = 32 * 4;
    o.tensor_parallel_size = size;
    o.tp_slices = slices;
    auto r = engine::make_model_runner(m.config, m.weights, o);
    EXPECT_TRUE(r.ok()) << r.status().message();
    if (!r.ok()) return std::vector<float>{};
    std::vector<float> out = decode_logits(**r, prompt, 20, vocab);
    const std::vector<float> chunked = all_logits(**r, prompt, 7);
    out.insert(out.end(), chunked.begin(), chunked.end());
    return out;
  };
  const std::vector<float> sliced = logits(1, model::kDefaultTpSlices);
  ASSERT_FALSE(sliced.empty());
  for (int size : {2, 4, 8})
    EXPECT_TRUE(same_bits(sliced, logits(size, model::kDefaultTpSlices))) << "size " << size;
  const std::vector<float> plain = logits(1, 0);
  EXPECT_EQ(plain.size(), sliced.size());
  EXPECT_FALSE(same_bits(plain, sliced)) << "the slice tree gave the plain GEMM's bits";
  EXPECT_FALSE(same_bits(plain, logits(2, 0))) << "size 2 without slices gave size 1's bits";
  // The sliced logits are still the model's: close to the plain GEMM's over the prompt (the
  // last 37 rows: the same tokens in both, where greedy decoding may part).
  const size_t tail = prompt.size() * size_t(vocab);
  ASSERT_GE(plain.size(), tail);
  const Agreement a = compare(std::vector<float>(sliced.end() - long(tail), sliced.end()),
                              std::vector<float>(plain.end() - long(tail), plain.end()), vocab);
  std::printf("  sliced vs plain: mean rel L2 %.5f, top-1 %.3f\n", a.mean_rel_l2, a.top1);
  EXPECT_LT(a.mean_rel_l2, 0.01);
}

// Padded steps (RunnerOptions::pad_graph_batches): decode batches of shrinking size, launched
// padded to a few sizes and replayed from CUDA graphs, give every sequence the bits it gets run
// alone, eagerly and unpadded. Teacher-forced tokens, so both runs feed the same ones.
TEST(CudaModel, PaddedGraphStepsGiveTheBitsOfUnpaddedSteps) {
  require_gpu();
  auto config = model::read_hf_config(testing::test_data("cuda/qwen3-0.6b"));
  ASSERT_TRUE(config.ok()) << config.status().message();
  model::LoadedModel m{*config, model::random_weights(*config, 7, DType::bf16), "qwen3-0.6b"};
  constexpr int kSeqs = 7, kBlocksPerSeq = 8;  // 128 positions each
  const int vocab = config->vocab_size;
  std::vector<std::vector<int32_t>> seqs;
  for (int s = 0; s < kSeqs; ++s) seqs.push_back(random_tokens(9 + 11 * s + 40, vocab, 100 + s));
  auto make = [&](bool padded) {
    model::RunnerOptions o;
    o.device = model::Device::cuda;
    o.block_size = kBlock;
    o.kv_blocks = kSeqs * kBlocksPerSeq;
    o.cuda_graphs = padded;
    o.pad_graph_batches = padded;
    auto r = engine::make_model_runner(m.config, m.weights, o);
    EXPECT_TRUE(r.ok()) << r.status().message();
    return r.ok() ? std::move(r).value() : nullptr;
  };
  auto table = [&](int s) {
    std::vector<int32_t> t(kBlocksPerSeq);
    for (int b = 0; b < kBlocksPerSeq; ++b) t[size_t(b)] = s * kBlocksPerSeq + b;
    return t;
  };
  const int prompt = 9;  // every sequence prefills its first 9 tokens, then decodes the rest
  // logits[s][t]: sequence s's row at decode position prompt + t.
  auto run = [&](model::ModelRunner& r, bool together) {
    std::vector<std::vector<std::vector<float>>> out(kSeqs);
    std::vector<float> logits;
    for (int s = 0; s < kSeqs; ++s) {
      model::BatchPlanBuilder b(kBlock, kBlocksPerSeq);
      b.add_sequence(std::span<const int32_t>(seqs[size_t(s)]).subspan(0, prompt), 0, table(s),
                     model::LogitRows::none);
      EXPECT_TRUE(r.forward(b.build(), logits).ok());
    }
    for (int pos = prompt;; ++pos) {
      std::vector<int> live;
      for (int s = 0; s < kSeqs; ++s)
        if (pos < int(seqs[size_t(s)].size())) live.push_back(s);
      if (live.empty()) break;
      // Together: one step of every live sequence (batch sizes 7, 6, ..., 1 as they end);
      // alone: one step per sequence.
      const size_t groups = together ? 1 : live.size();
      for (size_t g = 0; g < groups; ++g) {
        model::BatchPlanBuilder b(kBlock, kBlocksPerSeq);
        std::vector<int> in_step = together ? live : std::vector<int>{live[g]};
        for (int s : in_step)
          b.add_sequence(std::span<const int32_t>(seqs[size_t(s)]).subspan(size_t(pos), 1), pos,
                         table(s), model::LogitRows::last);
        EXPECT_TRUE(r.forward(b.build(), logits).ok());
        for (size_t i = 0; i < in_step.size(); ++i)
          out[size_t(in_step[i])].emplace_back(logits.begin() + i * size_t(vocab),
                                               logits.begin() + (i + 1) * size_t(vocab));
      }
    }
    return out;
  };
  auto alone = make(false);
  auto padded = make(true);
  ASSERT_TRUE(alone && padded);
  const auto want = run(*alone, false);
  const auto got = run(*padded, true);
  int compared = 0;
  for (int s = 0; s < kSeqs; ++s) {
    ASSERT_EQ(want[size_t(s)].size(), got[size_t(s)].size());
    for (size_t t = 0; t < want[size_t(s)].size(); ++t, ++compared)
      EXPECT_TRUE(same_bits(want[size_t(s)][t], got[size_t(s)][t]))
          << "sequence " << s << ", decode step " << t;
  }
  EXPECT_GT(compared, 300);
}

}  // namespace
}  // namespace invar
