// CPU attention throughput on SmolLM2-135M heads (Hq = 9, Hkv = 3, D = 64): a causal prefill of
// L tokens, and a decode step of a batch of B sequences at context L, vs a naive loop (scores,
// softmax, weighted sum per (token, head), reading the same paged cache), in one run.
// Reports median ms and GFLOP/s (4 * D flops per (query head, visible position)).
//
// Usage: bench_cpu_attention
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "core/thread_pool.h"
#include "kernels/cpu/ops.h"

namespace {

using Clock = std::chrono::steady_clock;
using invar::ThreadPool;
namespace k = invar::kernels;

template <class Fn>
double median_seconds(Fn fn, double budget) {
  fn();
  std::vector<double> times;
  const auto start = Clock::now();
  while (times.size() < 3 ||
         (std::chrono::duration<double>(Clock::now() - start).count() < budget &&
          times.size() < 100)) {
    const auto t0 = Clock::now();
    fn();
    times.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

void naive_attention(const float* q, const k::KvLayerRef& c, const k::AttentionPlan& plan, int hq,
                     float scale, float* out, ThreadPool& pool) {
  const int d = c.head_dim, g = hq / c.kv_heads;
  const int64_t tokens = plan.q_indptr[plan.num_seqs];
  std::vector<int> seq(size_t(tokens), 0);
  for (int s = 0; s < plan.num_seqs; ++s)
    for (int t = plan.q_indptr[s]; t < plan.q_indptr[s + 1]; ++t) seq[size_t(t)] = s;
  pool.parallel_for(tokens * hq, 1, [&](int64_t b, int64_t e) {
    std::vector<float> p;
    for (int64_t item = b; item < e; ++item) {
      const int64_t t = item / hq;
      const int h = int(item % hq), s = seq[size_t(t)];
      const int q_len = plan.q_indptr[s + 1] - plan.q_indptr[s];
      const int pos = plan.kv_lens[s] - q_len + int(t - plan.q_indptr[s]);
      const int32_t* table = plan.block_tables + int64_t(s) * plan.max_blocks_per_seq;
      // (an f32 cache: this baseline reads floats)
      auto row = [&](const void* base, int j) {
        const int64_t slot = int64_t(table[j / c.block_size]) * c.block_size + j % c.block_size;
        return static_cast<const float*>(base) + (slot * c.kv_heads + h / g) * d;
      };
      const float* qv = q + item * d;
      p.assign(size_t(pos + 1), 0.0f);
      float mx = -INFINITY, sum = 0;
      for (int j = 0; j <= pos; ++j) {
        float dot = 0;
        const float* kv = row(c.k, j);
        for (int i = 0; i < d; ++i) dot += qv[i] * kv[i];
        p[size_t(j)] = dot * scale;
        mx = std::max(mx, p[size_t(j)]);
      }
      for (auto& v : p) sum += (v = std::exp(v - mx));
      float* o = out + item * d;
      std::fill(o, o + d, 0.0f);
      for (int j = 0; j <= pos; ++j) {
        const float* vv = row(c.v, j);
        for (int i = 0; i < d; ++i) o[i] += p[size_t(j)] / sum * vv[i];
      }
    }
  });
}

struct Case {
  const char* name;
  int seqs, kv_len, q_len;
};

}  // namespace

int main() {
  const int hq = 9, hkv = 3, d = 64, bs = 16;
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  const Case cases[] = {{"prefill", 1, 512, 512}, {"prefill", 1, 2048, 2048},
                        {"decode", 1, 512, 1},    {"decode", 8, 512, 1},
                        {"decode", 8, 2048, 1},   {"chunk", 1, 2048, 256}};
  std::printf("%-8s %4s %6s %6s %3s | %9s %8s | %9s %8s | %7s\n", "case", "B", "ctx", "q", "thr",
              "invar ms", "GFLOP/s", "naive ms", "GFLOP/s", "speedup");
  for (const auto& c : cases) {
    const int blocks_per_seq = (c.kv_len + bs - 1) / bs;
    const int blocks = blocks_per_seq * c.seqs;
    std::vector<float> kc(size_t(blocks) * bs * hkv * d), vc(kc.size());
    for (auto& v : kc) v = dist(rng);
    for (auto& v : vc) v = dist(rng);
    std::vector<int32_t> indptr{0}, kv_lens, tables;
    std::vector<int32_t> perm(static_cast<size_t>(blocks));
    for (int i = 0; i < blocks; ++i) perm[size_t(i)] = i;
    std::shuffle(perm.begin(), perm.end(), rng);
    double flop = 0;
    for (int s = 0; s < c.seqs; ++s) {
      indptr.push_back(indptr.back() + c.q_len);
      kv_lens.push_back(c.kv_len);
      for (int b = 0; b < blocks_per_seq; ++b)
        tables.push_back(perm[size_t(s * blocks_per_seq + b)]);
      for (int t = 0; t < c.q_len; ++t) flop += 4.0 * d * hq * (c.kv_len - c.q_len + t + 1);
    }
    const k::KvLayerRef cache{kc.data(), vc.data(), blocks, bs, hkv, d};
    const k::AttentionPlan plan{c.seqs,        indptr.data(),  kv_lens.data(),
                                tables.data(), blocks_per_seq, bs};
    std::vector<float> q(size_t(indptr.back()) * hq * d), out(q.size());
    for (auto& v : q) v = dist(rng);
    for (int threads : {1, 2}) {
      ThreadPool pool(threads);
      const double t = median_seconds(
          [&] { k::cpu::attention(q.data(), cache, plan, hq, 0.125f, out.data(), pool); }, 0.3);
      const double tn = median_seconds(
          [&] { naive_attention(q.data(), cache, plan, hq, 0.125f, out.data(), pool); }, 0.3);
      std::printf("%-8s %4d %6d %6d %3d | %9.3f %8.1f | %9.3f %8.1f | %6.1fx\n", c.name, c.seqs,
                  c.kv_len, c.q_len, threads, t * 1e3, flop / t / 1e9, tn * 1e3, flop / tn / 1e9,
                  tn / t);
      std::fflush(stdout);
    }
  }
  return 0;
}
