// CPU prefill and decode throughput of a model (default: SmolLM2-135M), with the memory
// floor measured in the same run: a decode step must read every weight once, so
// step time >= weight bytes / read bandwidth. Batched decode reads the weights once per step
// for the whole batch, so its tokens/s should grow with the batch.
//   usage: bench_cpu_generate MODEL [--threads 1,2] [--weight-dtype f32|bf16] [--kv-dtype f16|f32]
// (default weights: as stored in the file, packed GGUF blocks included; default KV cache: f16)
#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <random>
#include <sstream>

#include "engine/model_bundle.h"
#include "model/transformer.h"

using namespace invar;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// Read bandwidth with `threads` threads: bytes summed per second over a buffer far larger
// than the caches (eight independent sums per thread so the adds do not limit it).
double read_bandwidth(ThreadPool& pool) {
  const size_t n = size_t(512) << 20;  // bytes
  std::vector<float> a(n / sizeof(float), 1.0f);
  double best = 0;
  std::vector<float> sink(size_t(pool.size()) * 8);
  for (int rep = 0; rep < 5; ++rep) {
    auto t = Clock::now();
    const int64_t chunks = int64_t(a.size() / 8);
    pool.parallel_for(chunks, 1 << 14, [&](int64_t lo, int64_t hi) {
      float acc[8] = {};
      for (int64_t c = lo; c < hi; ++c)
        for (int j = 0; j < 8; ++j) acc[j] += a[size_t(c) * 8 + size_t(j)];
      float total = 0;
      for (float v : acc) total += v;
      sink[size_t(lo % int64_t(sink.size()))] = total;
    });
    best = std::max(best, double(n) / seconds_since(t));
  }
  return best;
}

// Bytes a decode step must read: every matrix once, and the output projection (the embedding
// table when tied); the embedding lookup itself reads only the batch's rows.
size_t weight_bytes(const model::ModelWeights& w) {
  size_t total = w.output().bytes.size() + w.final_norm.bytes.size();
  for (const auto& l : w.layers)
    for (const auto* t : {&l.attn_norm, &l.wq, &l.wk, &l.wv, &l.wo, &l.bq, &l.bk, &l.bv,
                          &l.q_norm, &l.k_norm, &l.ffn_norm, &l.w_gate, &l.w_up, &l.w_down})
      total += t->bytes.size();
  return total;
}

struct Bench {
  const model::LoadedModel& m;
  ThreadPool& pool;
  DType kv_dtype;
  static constexpr int kBlock = 16;

  // Median seconds of `reps` forward steps of `seqs` sequences with `q` new tokens each after
  // `ctx` cached tokens.
  double step_seconds(int seqs, int q, int ctx, int reps) {
    const int max_blocks = (ctx + q + kBlock - 1) / kBlock;
    model::KvCache cache(m.config, seqs * max_blocks, kBlock, kv_dtype);
    model::Transformer tr(m.config, m.weights, pool);
    std::mt19937 rng(7);
    std::vector<std::vector<int32_t>> tokens(seqs), tables(seqs);
    for (int s = 0; s < seqs; ++s) {
      for (int i = 0; i < ctx + q; ++i) tokens[s].push_back(int32_t(rng() % m.config.vocab_size));
      for (int b = 0; b < max_blocks; ++b) tables[s].push_back(s * max_blocks + b);
    }
    std::vector<float> logits;
    std::vector<double> times;
    for (int r = 0; r < reps + 1; ++r) {
      model::BatchPlanBuilder builder(kBlock, max_blocks);
      for (int s = 0; s < seqs; ++s)
        builder.add_sequence(std::span<const int32_t>(tokens[s]).subspan(ctx, q), ctx, tables[s],
                             model::LogitRows::last);
      auto plan = builder.build();
      auto t = Clock::now();
      (void)tr.forward(plan, cache, logits);
      if (r > 0) times.push_back(seconds_since(t));  // the first is warm-up
    }
    std::sort(times.begin(), times.end());
    return times[times.size() / 2];
  }
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    fmt::print(stderr,
               "usage: {} MODEL [--threads 1,2] [--weight-dtype f32|bf16] [--kv-dtype f16|f32]\n",
               argv[0]);
    return 2;
  }
  std::vector<int> thread_counts{1, 2};
  model::LoadOptions opts;
  DType kv_dtype = DType::f16;
  for (int i = 2; i + 1 < argc; i += 2) {
    std::string flag = argv[i], val = argv[i + 1];
    if (flag == "--threads") {
      thread_counts.clear();
      std::stringstream ss(val);
      for (std::string part; std::getline(ss, part, ',');) thread_counts.push_back(std::stoi(part));
    } else if (flag == "--weight-dtype") {
      opts.weight_dtype = val == "bf16" ? DType::bf16 : DType::f32;
    } else if (flag == "--kv-dtype") {
      kv_dtype = val == "f32" ? DType::f32 : DType::f16;
    }
  }
  auto loaded = model::load_model(argv[1], opts);
  if (!loaded.ok()) {
    fmt::print(stderr, "error: {}\n", loaded.status().message());
    return 1;
  }
  const size_t wbytes = weight_bytes(loaded->weights);
  fmt::print("model {} | weights {} | KV cache {} ({:.0f} MB of weights read per decode step)\n",
             argv[1], opts.weight_dtype ? dtype_name(*opts.weight_dtype) : "as stored",
             dtype_name(kv_dtype), wbytes / 1e6);
  fmt::print("{:>7} | {:>22} | {:>10} | {:>12} | {:>14}\n", "threads", "workload", "tokens/s",
             "step ms", "floor ms (mem)");
  for (int threads : thread_counts) {
    ThreadPool pool(threads);
    const double bw = read_bandwidth(pool);
    const double floor_ms = 1e3 * double(wbytes) / bw;
    Bench b{*loaded, pool, kv_dtype};
    for (int prompt : {128, 512}) {
      double s = b.step_seconds(1, prompt, 0, 3);
      fmt::print("{:>7} | {:>22} | {:>10.1f} | {:>12.1f} | {:>14}\n", threads,
                 fmt::format("prefill {} tokens", prompt), prompt / s, 1e3 * s, "");
    }
    for (int batch : {1, 4, 16}) {
      double s = b.step_seconds(batch, 1, 256, 10);
      fmt::print("{:>7} | {:>22} | {:>10.1f} | {:>12.2f} | {:>14.2f}\n", threads,
                 fmt::format("decode batch {} @256", batch), batch / s, 1e3 * s, floor_ms);
    }
    fmt::print("{:>7} | read bandwidth {:.1f} GB/s\n", threads, bw / 1e9);
  }
  return 0;
}
