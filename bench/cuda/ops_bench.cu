// Benchmark of the row and element ops (kernels/cuda/ops.h) at Qwen3-8B sizes: RMSNorm
// invariant vs fast (threads per row from the row count) in the same run, and the others alone.
// Each point: random data, inputs rotated over copies of >= 256 MiB so that reads come from
// device memory; a CUDA graph of 20 calls, median of 15 replays. GB/s = bytes read + written / t.
//   R = rows (tokens), H = hidden 4096, I = intermediate 12288, V = vocab 151936
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "kernels/cuda/ops.h"

#include "bench_util.cuh"

using invar::Status;
using invar::kernels::KernelMode;
using namespace invar::kernels::cuda;
using bf16 = __nv_bfloat16;

namespace {

cudaStream_t g_stream;

// Median time of one call of `op(copy)` over rotated copies.
double time_op(const std::function<void(int)>& op, int copies) {
  constexpr int kLaunches = 20, kReps = 15;
  for (int i = 0; i < 3; ++i) op(i % copies);
  CHECK_CUDA(cudaStreamSynchronize(g_stream));
  cudaGraph_t g;
  cudaGraphExec_t exec;
  CHECK_CUDA(cudaStreamBeginCapture(g_stream, cudaStreamCaptureModeThreadLocal));
  for (int i = 0; i < kLaunches; ++i) op(i % copies);
  CHECK_CUDA(cudaStreamEndCapture(g_stream, &g));
  CHECK_CUDA(cudaGraphInstantiate(&exec, g, 0));
  cudaEvent_t a, b;
  CHECK_CUDA(cudaEventCreate(&a));
  CHECK_CUDA(cudaEventCreate(&b));
  std::vector<double> t;
  for (int r = 0; r < kReps; ++r) {
    CHECK_CUDA(cudaEventRecord(a, g_stream));
    CHECK_CUDA(cudaGraphLaunch(exec, g_stream));
    CHECK_CUDA(cudaEventRecord(b, g_stream));
    CHECK_CUDA(cudaEventSynchronize(b));
    float ms = 0;
    CHECK_CUDA(cudaEventElapsedTime(&ms, a, b));
    t.push_back(double(ms) * 1e3 / kLaunches);
  }
  std::sort(t.begin(), t.end());
  CHECK_CUDA(cudaGraphExecDestroy(exec));
  CHECK_CUDA(cudaGraphDestroy(g));
  CHECK_CUDA(cudaEventDestroy(a));
  CHECK_CUDA(cudaEventDestroy(b));
  return t[t.size() / 2];
}

// A pool of device memory carved into `copies` input sets.
struct Pool {
  std::vector<void*> bufs;
  void* get(size_t bytes, uint64_t seed) {
    void* p = nullptr;
    CHECK_CUDA(cudaMalloc(&p, bytes));
    fill_random_bf16<<<1024, 256, 0, g_stream>>>(static_cast<uint16_t*>(p), int64_t(bytes / 2),
                                                 seed);
    bufs.push_back(p);
    return p;
  }
  ~Pool() {
    for (void* p : bufs) cudaFree(p);
  }
};

int copies_for(size_t bytes) {
  return int(std::max<size_t>(
      1, std::min<size_t>(64, (size_t(256) << 20) / std::max<size_t>(bytes, 1) + 1)));
}

}  // namespace

int main() {
  CHECK_CUDA(cudaStreamCreateWithFlags(&g_stream, cudaStreamNonBlocking));
  cudaDeviceProp prop{};
  CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s; median of 15 graph replays of 20 calls; ratio = t(fast) / t(inv)\n",
              prop.name);
  const int64_t H = 4096, I = 12288, V = 151936;

  std::printf("\n%-26s | %9s %8s | %9s %8s | %5s\n", "rmsnorm H=4096, R rows", "inv us", "GB/s",
              "fast us", "GB/s", "ratio");
  for (int64_t rows : {1, 16, 128, 1024, 8192}) {
    for (bool add : {false, true}) {
      Pool pool;
      const size_t in_bytes = size_t(rows * H) * (add ? 6 : 2);
      const int copies = copies_for(in_bytes);
      std::vector<void*> x, res;
      for (int c = 0; c < copies; ++c) {
        x.push_back(pool.get(size_t(rows * H) * 2, uint64_t(c + 1)));
        if (add) res.push_back(pool.get(size_t(rows * H) * 4, uint64_t(c + 100)));
      }
      void* w = pool.get(size_t(H) * 2, 7);
      void* out = pool.get(size_t(rows * H) * 2, 8);
      double us[2];
      for (int v = 0; v < 2; ++v) {
        const KernelMode mode = v == 0 ? KernelMode::invariant : KernelMode::fast;
        us[v] = time_op(
            [&](int c) {
              if (add) {
                check(rmsnorm_add(static_cast<float*>(res[size_t(c)]), H,
                                  static_cast<bf16*>(x[size_t(c)]), H, static_cast<bf16*>(w), rows,
                                  H, 1e-6f, static_cast<bf16*>(out), H, mode, g_stream),
                      "rmsnorm_add");
              } else {
                check(rmsnorm(static_cast<bf16*>(x[size_t(c)]), H, static_cast<bf16*>(w), rows, H,
                              1e-6f, static_cast<bf16*>(out), H, mode, g_stream),
                      "rmsnorm");
              }
            },
            copies);
      }
      // bytes: x (bf16) [+ residual f32 read and written] + out (bf16)
      const double bytes = double(rows * H) * (add ? 2 + 8 + 2 : 2 + 2);
      std::printf("%-26s | %9.2f %8.0f | %9.2f %8.0f | %5.2f\n",
                  ((add ? "rmsnorm_add R=" : "rmsnorm R=") + std::to_string(rows)).c_str(), us[0],
                  bytes / us[0] * 1e-3, us[1], bytes / us[1] * 1e-3, us[1] / us[0]);
    }
  }

  std::printf("\n%-26s | %9s %8s\n", "op", "us", "GB/s");
  for (int64_t rows : {1, 128, 4096}) {
    Pool pool;
    const int copies = copies_for(size_t(rows * I) * 4);
    std::vector<void*> gu;
    for (int c = 0; c < copies; ++c)
      gu.push_back(pool.get(size_t(rows * 2 * I) * 2, uint64_t(c + 1)));
    void* out = pool.get(size_t(rows * I) * 2, 3);
    const double us = time_op(
        [&](int c) {
          const bf16* g = static_cast<bf16*>(gu[size_t(c)]);
          check(silu_mul(g, 2 * I, g + I, 2 * I, rows, I, static_cast<bf16*>(out), I, g_stream),
                "silu_mul");
        },
        copies);
    std::printf("%-26s | %9.2f %8.0f\n", ("silu_mul I=12288 R=" + std::to_string(rows)).c_str(), us,
                double(rows * I) * 6 / us * 1e-3);
  }
  for (int64_t rows : {1, 128, 4096}) {
    Pool pool;
    const int64_t ld = 48 * 128;  // q, k, v heads of one token (Qwen3-8B: 32 + 8 + 8)
    const int copies = copies_for(size_t(rows * ld) * 2);
    std::vector<void*> x;
    for (int c = 0; c < copies; ++c) x.push_back(pool.get(size_t(rows * ld) * 2, uint64_t(c + 1)));
    std::vector<int32_t> pos(static_cast<size_t>(rows));
    for (int64_t i = 0; i < rows; ++i) pos[size_t(i)] = int32_t(i * 37 % 32768);
    std::vector<float> inv(64);
    for (int i = 0; i < 64; ++i) inv[size_t(i)] = float(1.0 / __builtin_pow(1e6, i / 64.0));
    int32_t* dpos;
    float* dinv;
    CHECK_CUDA(cudaMalloc(&dpos, pos.size() * 4));
    CHECK_CUDA(cudaMalloc(&dinv, inv.size() * 4));
    CHECK_CUDA(cudaMemcpy(dpos, pos.data(), pos.size() * 4, cudaMemcpyHostToDevice));
    CHECK_CUDA(cudaMemcpy(dinv, inv.data(), inv.size() * 4, cudaMemcpyHostToDevice));
    const invar::kernels::RopeParams params{invar::kernels::RopeStyle::half, 128, dinv, 1.0f};
    const double us = time_op(
        [&](int c) {
          check(rope(static_cast<bf16*>(x[size_t(c)]), ld, dpos, rows, 40, 128, params, g_stream),
                "rope");
        },
        copies);
    std::printf("%-26s | %9.2f %8.0f\n", ("rope q+k 40x128 R=" + std::to_string(rows)).c_str(), us,
                double(rows * 40 * 128) * 4 / us * 1e-3);
    CHECK_CUDA(cudaFree(dpos));
    CHECK_CUDA(cudaFree(dinv));
  }
  for (int64_t rows : {1, 64, 256}) {
    Pool pool;
    const int copies = copies_for(size_t(rows * V) * 2);
    std::vector<void*> x;
    for (int c = 0; c < copies; ++c) x.push_back(pool.get(size_t(rows * V) * 2, uint64_t(c + 1)));
    int32_t* out;
    CHECK_CUDA(cudaMalloc(&out, size_t(rows) * 4));
    const double us = time_op(
        [&](int c) {
          check(argmax(static_cast<bf16*>(x[size_t(c)]), V, rows, V, out, g_stream), "argmax");
        },
        copies);
    std::printf("%-26s | %9.2f %8.0f\n", ("argmax V=151936 R=" + std::to_string(rows)).c_str(), us,
                double(rows * V) * 2 / us * 1e-3);
    CHECK_CUDA(cudaFree(out));
  }
  return 0;
}
