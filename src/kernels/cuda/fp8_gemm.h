// y = x W^T with FP8 (E4M3) operands on Hopper, for FP8 checkpoints (Qwen3-*-FP8, DeepSeek
// style): W as the checkpoint stores it, codes with one f32 scale per 128 x 128 block; x
// quantized on the fly, one scale per token per 128 columns; f32 accumulation, bf16 output.
//   M = rows of x (tokens), N = rows of W (output features), K = input features
//   KB = K / 128, NB = N / 128, Mp = fp8_scale_stride(M) (M rounded up to 4)
//
// What keeps the bits fixed (R1, R2, R4):
//   - quantize_fp8_rows: a token's codes and scales come from its own row alone: scale =
//     max(amax, 1e-10) / 448 (amax over its 128 columns; a max has no order), code = x / scale
//     rounded to nearest even in E4M3, saturating. No scale looks at another row.
//   - the invariant GEMM: for every output element and every 128-wide K block kb, the four
//     wgmma k32 steps of that block into a fresh f32 register, then acc = fma(block_sum,
//     sx[kb] * sw[kb], acc), for kb = 0, 1, ... in order, then one rounding to bf16. The tile
//     config never splits K and keeps one W scale block per tile (static_asserts in
//     sm90/fp8_gemm_sm90.cuh), so every config runs this recipe: fp8_gemm_test checks they
//     give the same bits, and the same bits for a row in any batch.
//   - fast: cuBLASLt's block-scaled FP8 GEMM (VEC128 x scales, 128 x 128 W scales), the
//     baseline and the negative control; its reduction order is cuBLAS's choice.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "kernels/types.h"

namespace invar::kernels::cuda {

inline constexpr int64_t kFp8Block = 128;  // the scale block along K (and N for W)
inline constexpr float kFp8E4m3Max = 448.0f;

// Rows the per-token scales are laid out for: TMA and cuBLASLt read the scales of one K block
// as one run of Mp floats, which must be a multiple of 16 bytes. Rows M..Mp-1 of the codes
// and scales are zeros, so their outputs (fast mode writes them) are zeros.
constexpr int64_t fp8_scale_stride(int64_t m) {
  return (m + 3) / 4 * 4;
}

// x [M, K] bf16 (row stride ldx) -> codes [Mp, K] E4M3 (row stride K) and scales [KB, Mp] f32
// (scale of token t, block kb at kb * Mp + t). K must be a multiple of 128.
Status quantize_fp8_rows(const __nv_bfloat16* x, int64_t ldx, int64_t m, int64_t k, uint8_t* codes,
                         float* scales, cudaStream_t stream);

// The W scales as the checkpoint stores them ([NB, KB] row-major, `weight_scale_inv`) in the
// two layouts the GEMMs read: [KB, NB] for the invariant kernels, [NB, KB4] (KB4 = KB rounded
// up to 4, the pad zeros) for cuBLASLt.
constexpr int64_t fp8_lt_scale_cols(int64_t kb) {
  return (kb + 3) / 4 * 4;
}

inline std::vector<float> fp8_scales_kmajor(const float* scales, int64_t nb, int64_t kb) {
  std::vector<float> out(size_t(nb * kb));
  for (int64_t n = 0; n < nb; ++n)
    for (int64_t k = 0; k < kb; ++k) out[size_t(k * nb + n)] = scales[n * kb + k];
  return out;
}

inline std::vector<float> fp8_scales_lt(const float* scales, int64_t nb, int64_t kb) {
  const int64_t cols = fp8_lt_scale_cols(kb);
  std::vector<float> out(size_t(nb * cols), 0.0f);
  for (int64_t n = 0; n < nb; ++n)
    for (int64_t k = 0; k < kb; ++k) out[size_t(n * cols + k)] = scales[n * kb + k];
  return out;
}

struct Fp8Weight {
  const uint8_t* codes = nullptr;  // [N, K] E4M3, row stride ldw
  int64_t ldw = 0;
  const float* scales = nullptr;     // [KB, NB]
  const float* scales_lt = nullptr;  // [NB, fp8_lt_scale_cols(KB)]
  int64_t n = 0, k = 0;
};

struct Fp8GemmProblem {
  const uint8_t* x = nullptr;  // [Mp, K] E4M3 (quantize_fp8_rows), row stride ldx
  int64_t ldx = 0;
  const float* x_scales = nullptr;  // [KB, Mp]
  Fp8Weight w;
  void* y = nullptr;  // [M, N] bf16 (fast mode writes Mp rows), row stride ldy
  int64_t ldy = 0;
  int64_t m = 0;
};

// Tile configs of the invariant FP8 GEMM, named as gemm.h's: (rows of x) x (rows of W).
enum class Fp8GemmTile : uint8_t {
  m32n128_swap,       // swap-AB (W in wgmma's 64-row A role), ping-pong persistent: decode
  m64n128_swap,       // swap-AB, ping-pong persistent
  m64n128,            // ping-pong persistent
  m128n128,           // cooperative persistent
  m128n128_swizzle8,  // m128n128, its tiles visited in swizzled bands of 8 (L2 reuse at large M)
};
inline constexpr int kFp8GemmTileCount = int(Fp8GemmTile::m128n128_swizzle8) + 1;
std::string_view fp8_gemm_tile_name(Fp8GemmTile tile);

// Per-device state (cuBLASLt handle, workspaces, cuBLASLt's algorithm per shape). Not
// thread-safe: one per stream-owning thread, like CudaGemm.
class CudaFp8Gemm {
 public:
  static Result<std::unique_ptr<CudaFp8Gemm>> create(int device);
  ~CudaFp8Gemm();
  CudaFp8Gemm(const CudaFp8Gemm&) = delete;
  CudaFp8Gemm& operator=(const CudaFp8Gemm&) = delete;

  // Enqueues y = x W^T. No allocation, no synchronisation once a shape has run once in fast
  // mode (cuBLASLt's heuristic is asked on a shape's first call): graph-capturable after that.
  // N and K must be multiples of 128. Invariant mode needs sm_90.
  Status run(const Fp8GemmProblem& p, KernelMode mode, cudaStream_t stream);

  // The invariant path with a forced tile config: for the R2 tests and the benchmark.
  Status run_tile(const Fp8GemmProblem& p, Fp8GemmTile tile, cudaStream_t stream);

  // Whether the last fast-mode run was cuBLASLt's: false where cuBLASLt finds no block-scaled
  // FP8 algorithm for the shape (seen on an H200 at M = 1); fast mode runs the invariant kernel
  // there, with a note on stderr the first time.
  bool fast_is_cublaslt() const;

  // The config `run` uses in invariant mode; any config gives the same bits.
  static Fp8GemmTile choose_tile(int64_t m, int64_t n);

 private:
  CudaFp8Gemm() = default;
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace invar::kernels::cuda
