// CPU gemm throughput on SmolLM2-135M shapes: invar's batch-invariant kernel vs a naive loop,
// side by side in one run.
//
// y[M, N] = x[M, K] W[N, K]^T for (N, K) in the model's projections (q/o: 576x576, k/v: 192x576,
// gate/up: 1536x576, down: 576x1536, lm_head: 49152x576), M = 1 (decode), 8 (decode batch),
// 64 and 256 (prefill chunks), 1 and 2 threads, f32, bf16 and packed (q4_1, q8_0, q4_k: random
// blocks with O(1) values) weights. Reports the median of
// timed repetitions after a warm-up, on random data: ms, GFLOP/s (2MNK / t) and GB/s of
// compulsory traffic (weights + x + y once). The floor: a measured memcpy bandwidth line.
//
// The naive baseline is the textbook loop (one dot product per output, threads split N like
// the kernel); it is batch invariant too, so the ratio is the cost or gain of the blocking.
//
// Weights are cold, as in a real decode step where the model does not fit in the caches: each
// timed call uses the next of enough copies of W to fill 3x a 32 MiB L3.
//
// Usage: bench_cpu_gemm [--quick] [--avx2] [--shape NAME] [--m M] [--threads T] [--dtype D]
//                       [--no-naive] [--warm]
//   --quick: fewer shapes (a smoke run); --avx2: pin Highway's dispatch to AVX2 (default: best);
//   --shape, --m, --threads, --dtype: run only that shape name / batch size / thread count /
//   weight type; --warm: one copy of W, so that it stays in the caches (the kernel's compute
//   rate without the memory stream).
#include <hwy/targets.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/block_quant.h"
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
        if (invar::dtype_is_packed(w.dtype)) {  // decode the row, then the dot product
          thread_local std::vector<float> row;
          row.resize(size_t(k));
          invar::decode_to_f32(
              w.dtype,
              static_cast<const uint8_t*>(w.data) + size_t(c) * invar::dtype_row_bytes(w.dtype, k),
              k, row.data());
          for (int64_t i = 0; i < k; ++i) s += x[r * k + i] * row[size_t(i)];
        } else if (w.dtype == DType::f32) {
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

// Random packed blocks: random quants and sub-block scales, f16 scales in [2^-9, 2^-4).
std::vector<uint8_t> random_packed(DType t, int64_t n, int64_t k, std::mt19937& rng) {
  std::vector<uint8_t> out(invar::dtype_row_bytes(t, k) * size_t(n));
  for (auto& b : out) b = uint8_t(rng());
  const size_t bb = invar::dtype_block(t).bytes;
  std::vector<size_t> fields;
  if (t == DType::q8_0 || t == DType::q4_0) fields = {0};
  if (t == DType::q4_1 || t == DType::q4_k || t == DType::q5_k) fields = {0, 2};
  std::uniform_real_distribution<float> mag(1.0f / 512, 1.0f / 16);
  for (size_t b = 0; b < out.size() / bb; ++b)
    for (size_t f : fields) {
      const uint16_t h = invar::f32_to_f16(mag(rng));
      std::memcpy(out.data() + b * bb + f, &h, 2);
    }
  return out;
}

double copy_bandwidth_gbs() {
  const size_t n = size_t(256) << 20;
  std::vector<char> a(n, 1), b(n, 2);
  const double t = median_seconds([&] { std::memcpy(b.data(), a.data(), n); }, 0.5);
  return 2.0 * double(n) / t / 1e9;  // read + write
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false, naive = true, warm = false;
  std::string only_shape;
  int64_t only_m = 0;
  int only_threads = 0;
  std::string only_dtype;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const bool has_value = i + 1 < argc;
    if (a == "--quick") quick = true;
    if (a == "--no-naive") naive = false;
    if (a == "--warm") warm = true;
    if (a == "--avx2") hwy::SetSupportedTargetsForTest(HWY_AVX2 | HWY_SCALAR);
    if (a == "--shape" && has_value) only_shape = argv[++i];
    if (a == "--m" && has_value) only_m = std::stoll(argv[++i]);
    if (a == "--threads" && has_value) only_threads = std::stoi(argv[++i]);
    if (a == "--dtype" && has_value) only_dtype = argv[++i];
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
  std::printf("dispatch target: %s\n", (supported & HWY_AVX3)   ? "AVX3 (AVX-512)"
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
    for (DType dt : {DType::f32, DType::bf16, DType::q4_1, DType::q8_0, DType::q4_k}) {
      if (!only_dtype.empty() && only_dtype != invar::dtype_name(dt)) continue;
      if (s.k % invar::dtype_block(dt).elems != 0) continue;  // K-quants need K % 256 == 0
      const std::vector<uint8_t> packed =
          invar::dtype_is_packed(dt) ? random_packed(dt, s.n, s.k, rng) : std::vector<uint8_t>();
      // Cold weights: cycle through copies totalling >= 96 MiB.
      const size_t wbytes = invar::dtype_row_bytes(dt, s.n * s.k);
      const size_t copies = warm ? 1 : std::max<size_t>(1, (size_t(96) << 20) / wbytes + 1);
      std::vector<std::vector<char>> store(copies);
      std::vector<WeightRef> refs;
      for (auto& c : store) {
        c.resize(wbytes);
        std::memcpy(c.data(),
                    dt == DType::f32    ? static_cast<const void*>(w.data())
                    : dt == DType::bf16 ? static_cast<const void*>(w16.data())
                                        : static_cast<const void*>(packed.data()),
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
