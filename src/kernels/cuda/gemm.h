// y = x W^T on NVIDIA GPUs: bf16 operands, f32 accumulation, bf16 output.
//   M = rows of x (tokens), N = output features (rows of W), K = input features
//
// Two modes (docs/invariance.md):
//   invariant - on Hopper (sm_90a) wgmma/TMA kernels. Every output element is one chain of
//               m64nXk16 wgmma steps over k = 0, 16, 32, ... in order into one f32
//               accumulator, then one f32 -> bf16 rounding: no split-K, no atomics, so the
//               recipe depends on (N, K) only (R1). The tile config is chosen from M (R5);
//               tests/cuda/gemm_test.cu proves every config gives the same bits (R2).
//               Other GPUs from sm_80 on run one portable config (mma.sync m16n8k16 chains
//               over k in order, sm80/): invariant too, with bits of its own.
//   fast      - cuBLAS with its default heuristics: the baseline and the negative control.
#pragma once

#include <cuda_runtime_api.h>

#include <array>
#include <cstdint>
#include <memory>
#include <string_view>

#include "core/status.h"
#include "kernels/types.h"

namespace invar::kernels::cuda {

// Tile configs of the invariant path, named by CTA tile (rows of x) x (rows of W).
// `_swap` configs put W in wgmma's A role (its 64-row side) and x in its B role, so that a
// decode batch of a few rows is not padded to 64 rows of x.
enum class GemmTile : uint8_t {
  m16n64_swap,   // swap-AB, ping-pong persistent: M <= 16
  m32n64_swap,   // swap-AB, ping-pong persistent
  m64n64_swap,   // swap-AB, ping-pong persistent
  m64n192_swap,  // swap-AB, ping-pong persistent: mid M, tile counts near whole waves
  m96n192_swap,  // swap-AB, ping-pong persistent
  m96n128_swap,  // swap-AB, cooperative persistent
  m64n32,        // one consumer warpgroup, non-persistent: decode (many CTAs for small N)
  m64n64,        // one consumer warpgroup, non-persistent
  m64n128,       // ping-pong warpgroups, persistent
  m128n96,       // cooperative warpgroups, persistent, 2x1 cluster: mid M on N = 6144
  m128n128,      // cooperative warpgroups, persistent
  m128n192,      // cooperative warpgroups, persistent (fills 132 SMs where N/256 tiles would not)
  m128n256,      // cooperative warpgroups, persistent, 2x1 cluster with W multicast (keep last)
};
// gemm.cu's registry has one entry per tile, in this order (static_asserts there).
inline constexpr int kGemmTileCount = int(GemmTile::m128n256) + 1;
inline constexpr auto kAllGemmTiles = [] {
  std::array<GemmTile, kGemmTileCount> all{};
  for (int i = 0; i < kGemmTileCount; ++i) all[size_t(i)] = GemmTile(i);
  return all;
}();
std::string_view gemm_tile_name(GemmTile tile);

// Row-major operands; leading dimensions are in elements. The invariant path needs K and N
// multiples of 8 and 16-byte aligned pointers and leading dimensions (TMA). Fill it with
// designated initializers ({.x = ..., .ldx = ..., ...}): m, n and k are all int64_t, and a
// positional list would take a swapped pair silently.
struct GemmProblem {
  const void* x = nullptr;  // [M, K] bf16
  int64_t ldx = 0;
  const void* w = nullptr;  // [N, K] bf16
  int64_t ldw = 0;
  void* y = nullptr;        // [M, N] bf16
  int64_t ldy = 0;
  int64_t m = 0, n = 0, k = 0;
  // `batch` independent GEMMs of this shape, the i-th at x + i * batch_x, w + i * batch_w,
  // y + i * batch_y (elements, multiples of 8); each gets the bits it gets alone. On Hopper one
  // launch (the batch is one more tile coordinate): tensor parallelism's K slices, x's column
  // blocks against contiguous weight slices (batch_x = K, batch_w = N * K). gemm_test's
  // BatchedGemmsGiveTheBitsOfEachAlone is its check.
  int64_t batch = 1, batch_x = 0, batch_w = 0, batch_y = 0;
  // Rows that x and y hold (readable, writable) from their first row on; 0 means m. Where it
  // reaches past m to the chosen config's last x-tile edge, the Hopper configs compute those
  // padding rows too (their y rows get whatever their x rows give) instead of loading a tile
  // that runs past x's last row: TMA's zero fill of such a tile makes its CTA far slower than a
  // full one (gemm-notes.md, run 12). Rows never mix (R1), so rows below m keep their bits
  // (gemm_test's PaddingRowsKeepTheBitsOfTheRealRows). A batch (batch > 1) never pads.
  int64_t row_capacity = 0;
};

// The largest x-tile edge of the Hopper configs (m128n256: a cluster of 2 CTAs of 128 x rows).
// Activation buffers that hold a multiple of it let every config compute its last x tile whole
// (GemmProblem::row_capacity).
inline constexpr int64_t kGemmRowEdge = 256;
constexpr int64_t rows_for_whole_tiles(int64_t rows) {
  return (rows + kGemmRowEdge - 1) / kGemmRowEdge * kGemmRowEdge;
}

// The gate/up projection with SiLU-and-multiply, h = silu(x Wg^T) * (x Wu^T) (silu_mul.cuh),
// from one weight W [2I, K] whose rows pair gate and up in blocks of kGateUpBlock: rows
// 16b..16b+7 hold gate rows 8b..8b+7, rows 16b+8..16b+15 the up rows of the same features
// (paired_gate_row). That puts both values of a feature in one thread's wgmma registers, so the
// GEMM's epilogue can finish the activation (sm90/gate_up_epilogue.cuh) and the [M, 2I]
// gate/up output never reaches memory. Where no fused epilogue runs (decode-sized tiles, fast
// mode, the portable config) the GEMM writes `scratch` and silu_mul_paired follows: the same
// bits as the fused epilogue, which gemm_test checks for every config.
inline constexpr int64_t kGateUpBlock = 8;

// The row of the paired gate/up weight holding gate row i; up row i is kGateUpBlock further.
constexpr int64_t paired_gate_row(int64_t i) {
  return (i / kGateUpBlock) * 2 * kGateUpBlock + i % kGateUpBlock;
}

struct GateUpProblem {
  const void* x = nullptr;  // [M, K] bf16
  int64_t ldx = 0;
  const void* w = nullptr;  // [2I, K] bf16, gate and up rows paired
  int64_t ldw = 0;
  void* h = nullptr;        // [M, I] bf16
  int64_t ldh = 0;
  void* scratch = nullptr;  // [M, 2I] bf16, row stride 2I: the unfused paths' GEMM output
  int64_t m = 0, inter = 0, k = 0;
  int64_t row_capacity = 0;  // rows x, h and scratch hold (0: m): GemmProblem::row_capacity
};

// Owns the per-device state a GEMM call needs (cuBLAS handle, workspace, SM count), so no
// handle lives in a global (STYLE.md). Not thread-safe: one per stream-owning thread.
class CudaGemm {
 public:
  static Result<std::unique_ptr<CudaGemm>> create(int device);
  ~CudaGemm();
  CudaGemm(const CudaGemm&) = delete;
  CudaGemm& operator=(const CudaGemm&) = delete;

  // Enqueues y = x W^T on `stream`. No allocation, no synchronisation: graph-capturable.
  Status run(const GemmProblem& p, KernelMode mode, cudaStream_t stream);

  // The invariant path with a forced tile config: for the R2 boundary tests and benchmarks.
  Status run_tile(const GemmProblem& p, GemmTile tile, cudaStream_t stream);

  // h = silu(x Wg^T) * (x Wu^T) (GateUpProblem). Invariant mode on Hopper runs choose_tile's
  // config for N = 2I, with the fused epilogue where that config has one, unless `fuse` is
  // false: then always the GEMM into p.scratch and silu_mul_paired, which leaves gate and up in
  // scratch (for a probe) and gives the same bits.
  Status run_gate_up(const GateUpProblem& p, KernelMode mode, cudaStream_t stream,
                     bool fuse = true);

  // The same with a forced tile config, fused (where the config has the epilogue: fuses_gate_up)
  // or as GEMM then silu_mul_paired: for the tests and benchmarks.
  Status run_gate_up_tile(const GateUpProblem& p, GemmTile tile, bool fused, cudaStream_t stream);
  static bool fuses_gate_up(GemmTile tile);

  // The portable invariant config (sm_80 and newer): what run() uses off Hopper; callable on
  // Hopper too, for its tests and benchmarks.
  Status run_portable(const GemmProblem& p, cudaStream_t stream);

  // The tile config `run` uses in invariant mode. Any config gives the same bits (R2), so
  // the choice may look at M; it never looks at the SM count. whole_tiles: x and y hold
  // rows_for_whole_tiles(m) rows (GemmProblem::row_capacity), so no config loads a short last
  // x tile.
  static GemmTile choose_tile(int64_t m, int64_t n, int64_t k, bool whole_tiles = false);

 private:
  CudaGemm() = default;
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace invar::kernels::cuda
