// CPU gemm throughput on SmolLM2-135M shapes: invar's batch-invariant kernel vs a naive loop,
// side by side in one run.
//
// y[M, N] = x[M, K] W[N, K]^T for (N, K) in the model's projections (q/o: 576x576, k/v: 192x576,
// gate/up: 1536x576, down: 576x1536, lm_head: 49152x576), M = 1 (decode), 8 (decode batch),
// 64 and 256 (prefill chunks), 1 and 2 threads, f32 and bf16 weights. Reports the median of
// timed repetitions after a warm-up, on random data: ms, GFLOP/s (2MNK / t) and GB/s of
// compulsory traffic (weights + x + y once). The floor: a measured memcpy bandwidth line.
//
// The naive baseline is the textbook loop (one dot product per output, threads split N like
// the kernel); it is batch invariant too, so the ratio is the cost or gain of the blocking.
//
// Weights are cold, as in a real decode step where the model does not fit in the caches: each
// timed call uses the next of enough copies of W to fill 3x a 32 MiB L3.
//
// Usage: bench_cpu_gemm [--quick] [--avx2] [--shape NAME] [--m M] [--threads T] [--no-naive]
//   --quick: fewer shapes (a smoke run); --avx2: pin Highway's dispatch to AVX2 (default: best);
//   --shape, --m, --threads: run only that shape name / batch size / thread count.
#include <hwy/targets.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/thread_pool.h"
#include "kernels/cpu/ops.h"

namespace {

using Clock = std::chrono::steady_clock;
using invar::DType;
using invar::ThreadPool;
using invar::kernels::WeightRef;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Median seconds of fn over repetitions: at least 3 (1 if one call exceeds `budget`), until
// `budget` seconds are spent, after one warm-up call.
template <class Fn>
double median_seconds(Fn fn, double budget) {
  auto t0 = Clock::now();
  fn();
  const double first = seconds_since(t0);
  std::vector<double> times;
  if (first > budget) return first;
  const auto start = Clock::now();
  while (times.size() < 3 || (seconds_since(start) < budget && times.size() < 200)) {
    t0 = Clock::now();
    fn();
    times.push_back(seconds_since(t0));
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

void naive_gemm(const float* x, const WeightRef& w, int64_t m, float* y, ThreadPool& pool) {
  const int64_t n = w.rows, k = w.cols;
  pool.parallel_for(n, 1, [&](int64_t b, int64_t e) {
    for (int64_t r = 0; r < m; ++r) {
      for (int64_t c = b; c < e; ++c) {
        float s = 0;
        if (w.dtype == DType::f32) {
          const float* wr = static_cast<const float*>(w.data) + c * k;
          for (int64_t i = 0; i < k; ++i) s += x[r * k + i] * wr[i];
        } else {
          const uint16_t* wr = static_cast<const uint16_t*>(w.data) + c * k;
          for (int64_t i = 0; i < k; ++i) s += x[r * k + i] * invar::bf16_to_f32(wr[i]);
        }
        y[r * n + c] = s;
      }
    }
  });
}

double copy_bandwidth_gbs() {
  const size_t n = size_t(256) << 20;
  std::vector<char> a(n, 1), b(n, 2);
  const double t = median_seconds([&] { std::memcpy(b.data(), a.data(), n); }, 0.5);
  return 2.0 * double(n) / t / 1e9;  // read + write
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false, naive = true;
  std::string only_shape;
  int64_t only_m = 0;
  int only_threads = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const bool has_value = i + 1 < argc;
    if (a == "--quick") quick = true;
    if (a == "--no-naive") naive = false;
    if (a == "--avx2") hwy::SetSupportedTargetsForTest(HWY_AVX2 | HWY_SCALAR);
    if (a == "--shape" && has_value) only_shape = argv[++i];
    if (a == "--m" && has_value) only_m = std::stoll(argv[++i]);
    if (a == "--threads" && has_value) only_threads = std::stoi(argv[++i]);
  }
  struct Shape {
    int64_t n, k;
    const char* name;
  };
  std::vector<Shape> shapes = {{576, 576, "q/o"},
                               {192, 576, "k/v"},
                               {1536, 576, "gate/up"},
                               {576, 1536, "down"},
                               {49152, 576, "lm_head"}};
  std::vector<int64_t> ms = {1, 8, 64, 256};
  if (only_m) ms = {only_m};
  if (quick) shapes.resize(2), ms = {1, 64};

  const int64_t supported = hwy::SupportedTargets();
  std::printf("dispatch target: %s\n", (supported & HWY_AVX3)   ? "AVX3 (AVX-512, 256-bit vectors)"
                                       : (supported & HWY_AVX2) ? "AVX2"
                                                                : "fallback");
  std::printf("memcpy bandwidth (read + write): %.1f GB/s\n\n", copy_bandwidth_gbs());
  std::printf("%-8s %6s %5s %4s %3s %5s | %9s %8s %7s | %9s %8s | %7s\n", "shape", "N", "K", "M",
              "thr", "w", "invar ms", "GFLOP/s", "GB/s", "naive ms", "GFLOP/s", "speedup");

  std::mt19937 rng(42);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (const auto& s : shapes) {
    if (!only_shape.empty() && only_shape != s.name) continue;
    std::vector<float> w(size_t(s.n * s.k));
    for (auto& v : w) v = dist(rng);
    std::vector<uint16_t> w16(w.size());
    for (size_t i = 0; i < w.size(); ++i) w16[i] = invar::f32_to_bf16(w[i]);
    for (DType dt : {DType::f32, DType::bf16}) {
      // Cold weights: cycle through copies totalling >= 96 MiB.
      const size_t wbytes = w.size() * invar::dtype_size(dt);
      const size_t copies = std::max<size_t>(1, (size_t(96) << 20) / wbytes + 1);
      std::vector<std::vector<char>> store(copies);
      std::vector<WeightRef> refs;
      for (auto& c : store) {
        c.resize(wbytes);
        std::memcpy(c.data(), dt == DType::f32 ? static_cast<const void*>(w.data()) : w16.data(),
                    wbytes);
        refs.push_back(WeightRef{c.data(), dt, s.n, s.k});
      }
      for (int64_t m : ms) {
        if (only_m && m != only_m) continue;
        std::vector<float> x(size_t(m * s.k)), y(size_t(m * s.n));
        for (auto& v : x) v = dist(rng);
        for (int threads : {1, 2}) {
          if (only_threads && threads != only_threads) continue;
          ThreadPool pool(threads);
          size_t next = 0;
          const double t = median_seconds(
              [&] {
                invar::kernels::cpu::gemm(x.data(), refs[next++ % copies], nullptr, m, y.data(),
                                          pool);
              },
              0.3);
          const double tn =
              !naive ? 0.0
                     : median_seconds(
                           [&] { naive_gemm(x.data(), refs[next++ % copies], m, y.data(), pool); },
                           0.3);
          const double flop = 2.0 * double(m) * double(s.n) * double(s.k);
          const double bytes = double(wbytes) + 4.0 * double(m * s.k + m * s.n);
          std::printf("%-8s %6lld %5lld %4lld %3d %5s | %9.3f %8.1f %7.1f | %9.3f %8.1f | %6.1fx\n",
                      s.name, (long long)s.n, (long long)s.k, (long long)m, threads,
                      std::string(invar::dtype_name(dt)).c_str(), t * 1e3, flop / t / 1e9,
                      bytes / t / 1e9, tn * 1e3, flop / tn / 1e9, tn / t);
          std::fflush(stdout);
        }
      }
    }
  }
  return 0;
}
