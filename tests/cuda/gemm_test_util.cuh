// Shared by the GEMM tests (gemm_test.cu, gate_up_test.cu), over test_util.cuh: random bf16 data,
// the f64 reference GEMM, the row comparison, the fixture owning a CudaGemm, and the batch
// sizes of the invariance sweeps.
//   M = rows of x (tokens), N = rows of W (output features), K = input features
#pragma once

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/cuda/gemm.h"
#include "test_util.cuh"  // CUDA_OK, STATUS_OK, DeviceBuffer, random data

namespace invar::kernels::cuda {
namespace {

struct Shape {
  const char* name;
  int64_t n, k;
};

// Qwen3-8B: qkv, o_proj, gate_up, down_proj, lm_head. SmolLM2-135M: q/o, kv, gate/up
// (intermediate 1536), down, lm_head.
constexpr Shape kQwen3Shapes[] = {{"qwen3-8b qkv", 6144, 4096},
                                  {"qwen3-8b o_proj", 4096, 4096},
                                  {"qwen3-8b gate_up", 24576, 4096},
                                  {"qwen3-8b down_proj", 4096, 12288},
                                  {"qwen3-8b lm_head", 151936, 4096}};
constexpr Shape kSmolShapes[] = {{"smollm2 q/o", 576, 576},
                                 {"smollm2 kv", 192, 576},
                                 {"smollm2 gate/up", 1536, 576},
                                 {"smollm2 down", 576, 1536},
                                 {"smollm2 lm_head", 49152, 576}};

using cudatest::bf16_value;
using cudatest::device_buffer;
using cudatest::fill_random_bf16;  // uniform in [-1, 1) rounded to bf16: never zeros (METHOD.md)
using cudatest::fill_u16_kernel;

// ref[m, n] = sum_k x[m, k] w[n, k] in f64, one thread per output.
__global__ void reference_gemm(const uint16_t* x, int64_t ldx, const uint16_t* w, int64_t ldw,
                               double* ref, int64_t m, int64_t n, int64_t k) {
  int64_t col = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  int64_t row = blockIdx.y;
  if (col >= n || row >= m) return;
  double acc = 0.0;
  for (int64_t i = 0; i < k; ++i)
    acc += double(bf16_value(x[row * ldx + i])) * double(bf16_value(w[col * ldw + i]));
  ref[row * n + col] = acc;
}

// Counts rows r < m where a[r, :n] and b[r, :n] differ in any bit; records the first one.
__global__ void count_row_mismatches(const uint16_t* a, int64_t lda, const uint16_t* b,
                                     int64_t ldb, int64_t m, int64_t n,
                                     unsigned long long* count, int* first_row) {
  int64_t row = blockIdx.x;
  if (row >= m) return;
  int diff = 0;
  for (int64_t c = threadIdx.x; c < n; c += blockDim.x)
    diff |= a[row * lda + c] != b[row * ldb + c];
  diff = __syncthreads_or(diff);
  if (diff && threadIdx.x == 0) {
    atomicAdd(count, 1ull);
    atomicMin(first_row, int(row));
  }
}

class GemmCuda : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) return;
    auto g = CudaGemm::create(0);
    if (!g.ok()) {
      std::fprintf(stderr, "CudaGemm::create: %s\n", g.status().message().c_str());
      return;
    }
    gemm_ = std::move(g).value().release();
    cudaDeviceProp prop{};
    cudaGetDeviceProperties(&prop, 0);
    std::printf("device: %s, %d SMs, sm_%d%d\n", prop.name, prop.multiProcessorCount, prop.major,
                prop.minor);
  }
  static void TearDownTestSuite() {
    delete gemm_;
    gemm_ = nullptr;
  }
  void SetUp() override {
    if (gemm_) return;
    // scripts/gpu-check sets INVAR_REQUIRE_GPU=1: there a missing GPU is a failure.
    const char* require = std::getenv("INVAR_REQUIRE_GPU");
    if (require && std::string(require) == "1") FAIL() << "INVAR_REQUIRE_GPU=1 but no usable CUDA device";
    GTEST_SKIP() << "no CUDA device";
  }
  static CudaGemm* gemm_;
};
CudaGemm* GemmCuda::gemm_ = nullptr;

constexpr int64_t kMaxRows = 16384;

std::vector<int64_t> batch_sizes() {
  std::vector<int64_t> ms;
  for (int64_t m = 1; m <= 512; ++m) ms.push_back(m);
  for (int64_t m : {521, 577, 640, 769, 1000, 1021, 1024, 1031, 2047, 2053, 3001, 4096, 4099,
                    6007, 8191, 8192, 9973, 12289, 16381, 16384})
    ms.push_back(m);
  return ms;
}

// The row offset of a batch inside the big product: the request's slot moves with M.
int64_t slot_of(int64_t m) { return m == kMaxRows ? 0 : (m * 7919) % std::min<int64_t>(97, kMaxRows - m + 1); }

}  // namespace
}  // namespace invar::kernels::cuda
