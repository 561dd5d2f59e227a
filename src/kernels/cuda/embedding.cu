// embedding: out[t, :] = table[ids[t], :], an exact widening to f32 or a bf16 copy.
// One CTA per token; no arithmetic, so nothing here can depend on the batch. An id outside
// [0, V) writes zeros (the caller validates ids; this only keeps the read in bounds).
//   T = tokens, V = vocab, H = hidden size
#include "kernels/cuda/device.h"
#include "kernels/cuda/ops.h"

namespace invar::kernels::cuda {
namespace {

using bf16 = __nv_bfloat16;

__device__ __forceinline__ void put(float* p, bf16 v) {
  *p = __bfloat162float(v);
}
__device__ __forceinline__ void put(bf16* p, bf16 v) {
  *p = v;
}

template <typename T>
__global__ void embedding_kernel(const bf16* table, int64_t vocab, int64_t hidden,
                                 const int32_t* ids, T* out, int64_t ldo) {
  const int64_t t = blockIdx.x;
  const int32_t id = ids[t];
  const bool ok = id >= 0 && id < vocab;
  const bf16* src = table + (ok ? int64_t(id) : 0) * hidden;
  T* dst = out + t * ldo;
  for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x) {
    put(dst + i, ok ? src[i] : __float2bfloat16_rn(0.0f));
  }
}

template <typename T>
Status launch(const bf16* table, int64_t vocab, int64_t hidden, const int32_t* ids, int64_t tokens,
              T* out, int64_t ldo, cudaStream_t stream) {
  if (tokens <= 0 || hidden <= 0) return {};
  if (tokens > (int64_t(1) << 31) - 1) return Status::error("embedding: more than 2^31 - 1 tokens");
  embedding_kernel<T><<<unsigned(tokens), 256, 0, stream>>>(table, vocab, hidden, ids, out, ldo);
  return cuda_status(cudaGetLastError(), "embedding: kernel launch");
}

}  // namespace

Status embedding(const bf16* table, int64_t vocab, int64_t hidden, const int32_t* ids,
                 int64_t tokens, float* out, int64_t ldo, cudaStream_t stream) {
  return launch(table, vocab, hidden, ids, tokens, out, ldo, stream);
}

Status embedding(const bf16* table, int64_t vocab, int64_t hidden, const int32_t* ids,
                 int64_t tokens, bf16* out, int64_t ldo, cudaStream_t stream) {
  return launch(table, vocab, hidden, ids, tokens, out, ldo, stream);
}

}  // namespace invar::kernels::cuda
