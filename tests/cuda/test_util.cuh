// Shared pieces of the CUDA op tests: checks, device buffers (the backend's own DeviceBuffer),
// seeded random data, device setup.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "core/status.h"
#include "kernels/cuda/device.h"

namespace invar::kernels::cuda::cudatest {

#define CUDA_OK(expr)                                                      \
  do {                                                                     \
    cudaError_t e_ = (expr);                                               \
    ASSERT_EQ(e_, cudaSuccess) << #expr << ": " << cudaGetErrorString(e_); \
  } while (0)

#define STATUS_OK(expr)                                    \
  do {                                                     \
    ::invar::Status s_ = (expr);                           \
    ASSERT_TRUE(s_.ok()) << #expr << ": " << s_.message(); \
  } while (0)

using ::invar::kernels::cuda::DeviceBuffer;

// A device buffer of `bytes` for a test; an allocation failure fails the test (the buffer is
// then null).
inline DeviceBuffer device_buffer(size_t bytes) {
  DeviceBuffer b;
  const Status s = b.reserve(bytes, "a test buffer");
  if (!s.ok()) ADD_FAILURE() << s.message();
  return b;
}

template <typename T>
DeviceBuffer upload(const std::vector<T>& v) {
  DeviceBuffer b = device_buffer(v.size() * sizeof(T));
  if (b.as() && !v.empty())
    cudaMemcpy(b.as(), v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice);
  return b;
}

template <typename T>
std::vector<T> download(const void* p, size_t count) {
  std::vector<T> v(count);
  if (count) cudaMemcpy(v.data(), p, count * sizeof(T), cudaMemcpyDeviceToHost);
  return v;
}

__host__ __device__ inline uint32_t mix(uint64_t seed, uint64_t i) {
  uint64_t z = seed * 0x9E3779B97F4A7C15ull + i * 0xBF58476D1CE4E5B9ull + 0x94D049BB133111EBull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return uint32_t((z ^ (z >> 31)) >> 32);
}

// Uniform in [-1, 1): random data, never zeros (METHOD.md).
__host__ __device__ inline float uniform(uint64_t seed, uint64_t i) {
  return float(mix(seed, i) >> 8) * (1.0f / 8388608.0f) - 1.0f;
}

__host__ __device__ inline uint16_t bf16_bits(float f) {
  uint32_t b;
  memcpy(&b, &f, 4);
  return uint16_t((b + 0x7fffu + ((b >> 16) & 1u)) >> 16);
}

__host__ __device__ inline float bf16_value(uint16_t h) {
  uint32_t b = uint32_t(h) << 16;
  float f;
  memcpy(&f, &b, 4);
  return f;
}

// p[i] = bf16(scale * uniform(seed, i)).
__global__ void fill_random_bf16_kernel(uint16_t* p, int64_t count, uint64_t seed, float scale) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count;
       i += int64_t(gridDim.x) * blockDim.x)
    p[i] = bf16_bits(scale * uniform(seed, uint64_t(i)));
}
__global__ void fill_random_f32_kernel(float* p, int64_t count, uint64_t seed, float scale) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count;
       i += int64_t(gridDim.x) * blockDim.x)
    p[i] = scale * uniform(seed, uint64_t(i));
}
__global__ void fill_u16_kernel(uint16_t* p, int64_t count, uint16_t v) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count;
       i += int64_t(gridDim.x) * blockDim.x)
    p[i] = v;
}

inline void fill_random_bf16(void* p, int64_t count, uint64_t seed, float scale = 1.0f) {
  fill_random_bf16_kernel<<<1024, 256>>>(static_cast<uint16_t*>(p), count, seed, scale);
}
inline void fill_random_f32(void* p, int64_t count, uint64_t seed, float scale = 1.0f) {
  fill_random_f32_kernel<<<1024, 256>>>(static_cast<float*>(p), count, seed, scale);
}
// bf16 NaN everywhere: an element the kernel fails to write shows up.
inline void poison_bf16(void* p, int64_t count) {
  fill_u16_kernel<<<1024, 256>>>(static_cast<uint16_t*>(p), count, 0xFFFFu);
}

// Prints the device once; skips (or fails under INVAR_REQUIRE_GPU=1) without a usable GPU.
inline bool have_gpu() {
  static int state = -1;
  if (state < 0) {
    int n = 0;
    state = cudaGetDeviceCount(&n) == cudaSuccess && n > 0 ? 1 : 0;
    if (state) {
      cudaDeviceProp prop{};
      cudaGetDeviceProperties(&prop, 0);
      std::printf("device: %s, %d SMs, sm_%d%d\n", prop.name, prop.multiProcessorCount, prop.major,
                  prop.minor);
    }
  }
  return state == 1;
}

#define REQUIRE_GPU()                                              \
  do {                                                             \
    if (!::invar::kernels::cuda::cudatest::have_gpu()) {           \
      const char* require_ = std::getenv("INVAR_REQUIRE_GPU");     \
      if (require_ && std::string(require_) == "1")                \
        FAIL() << "INVAR_REQUIRE_GPU=1 but no usable CUDA device"; \
      GTEST_SKIP() << "no CUDA device";                            \
    }                                                              \
  } while (0)

}  // namespace invar::kernels::cuda::cudatest
