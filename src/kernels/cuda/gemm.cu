// Launcher of y = x W^T on NVIDIA GPUs (interface and recipe: gemm.h).
//   M = rows of x (tokens), N = rows of W (output features), K = input features
// invariant: on Hopper a tile config from sm90/, chosen by choose_tile; on other GPUs from sm_80
// on, the portable config of sm80/; fast: cuBLAS GemmEx.
#include <cublas_v2.h>

#include <iterator>
#include <string>
#include <utility>

#include "kernels/cuda/device.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/grid.h"
#include "kernels/cuda/ops.h"
#include "kernels/cuda/sm80/gemm_sm80.h"
#include "kernels/cuda/sm90/gemm_sm90.h"

namespace invar::kernels::cuda {
namespace {

// cuBLAS's recommended workspace on Hopper; given explicitly so that calls never allocate
// (graph capture) and fast mode runs as PyTorch runs it.
constexpr size_t kCublasWorkspaceBytes = size_t(32) << 20;
constexpr size_t kTileWorkspaceBytes = size_t(1) << 20;

Status cublas_status(cublasStatus_t s, const char* what) {
  if (s == CUBLAS_STATUS_SUCCESS) return {};
  return Status::error(std::string(what) + ": " + cublasGetStatusString(s));
}

using TileLaunch = const char* (*)(const sm90::GemmArgs&, cudaStream_t);

struct TileInfo {
  GemmTile tile;
  std::string_view name;
  int bm, bn;   // rows of x, rows of W per CTA tile
  int cluster;  // CTAs per cluster along M: the grid's M tiles round up to a multiple
  TileLaunch launch;
  // The config with the SiLU-and-multiply epilogue, or nullptr where it does not pay: at
  // decode the separate pass is ~3 % of the gate/up GEMM, and m64n192_swap's epilogue (2-byte
  // stores, one token apart) ran 10 % slower fused at SmolLM2's M = 512. Elsewhere the fused
  // epilogue is 4-13 % faster than GEMM + silu_mul from M = 128 on
  // (bench/results/gate-up-h200-2026-12-01-run*.txt).
  TileLaunch launch_gate_up;
};

// The tile registry, indexed by GemmTile: a tile without an entry (or one out of order) does not
// compile, so no test can pass with one config while another runs.
constexpr TileInfo kTiles[] = {
    {GemmTile::m16n64_swap, "m16n64_swap", 16, 64, 1, sm90::gemm_m16n64_swap, nullptr},
    {GemmTile::m32n64_swap, "m32n64_swap", 32, 64, 1, sm90::gemm_m32n64_swap, nullptr},
    {GemmTile::m64n64_swap, "m64n64_swap", 64, 64, 1, sm90::gemm_m64n64_swap, nullptr},
    {GemmTile::m64n192_swap, "m64n192_swap", 64, 192, 1, sm90::gemm_m64n192_swap, nullptr},
    {GemmTile::m96n192_swap, "m96n192_swap", 96, 192, 1, sm90::gemm_m96n192_swap,
     sm90::gemm_m96n192_swap_gate_up},
    {GemmTile::m96n128_swap, "m96n128_swap", 96, 128, 1, sm90::gemm_m96n128_swap,
     sm90::gemm_m96n128_swap_gate_up},
    {GemmTile::m64n32, "m64n32", 64, 32, 1, sm90::gemm_m64n32, nullptr},
    {GemmTile::m64n64, "m64n64", 64, 64, 1, sm90::gemm_m64n64, nullptr},
    {GemmTile::m64n128, "m64n128", 64, 128, 1, sm90::gemm_m64n128, sm90::gemm_m64n128_gate_up},
    {GemmTile::m128n96, "m128n96", 128, 96, 2, sm90::gemm_m128n96, nullptr},
    {GemmTile::m128n128, "m128n128", 128, 128, 1, sm90::gemm_m128n128, sm90::gemm_m128n128_gate_up},
    {GemmTile::m128n192, "m128n192", 128, 192, 1, sm90::gemm_m128n192, sm90::gemm_m128n192_gate_up},
    {GemmTile::m128n256, "m128n256", 128, 256, 2, sm90::gemm_m128n256, sm90::gemm_m128n256_gate_up},
};
static_assert(std::size(kTiles) == size_t(kGemmTileCount), "one registry entry per GemmTile");
constexpr bool registry_in_enum_order() {
  for (size_t i = 0; i < std::size(kTiles); ++i) {
    if (kTiles[i].tile != GemmTile(i) || kTiles[i].launch == nullptr) return false;
  }
  return true;
}
static_assert(registry_in_enum_order(), "kTiles[i] must describe GemmTile(i)");

constexpr const TileInfo& tile_info(GemmTile t) {
  return kTiles[size_t(t)];
}

int64_t tile_count(const TileInfo& t, int64_t m, int64_t n) {
  return ceil_div(ceil_div(m, t.bm), t.cluster) * t.cluster * ceil_div(n, t.bn);
}

// Share of the launched tile waves that holds real outputs: below 1 from partial edge tiles,
// cluster padding and a last wave that leaves SMs idle.
double wave_fill(const TileInfo& t, int64_t m, int64_t n) {
  const int64_t waves = ceil_div(tile_count(t, m, n), kReferenceSmCount);
  return double(m) * double(n) / (double(waves) * double(kReferenceSmCount) * t.bm * t.bn);
}

// Whether every config computes p's last x tile whole (GemmProblem::row_capacity).
bool holds_whole_tiles(const GemmProblem& p) {
  return p.batch == 1 && p.row_capacity >= rows_for_whole_tiles(p.m);
}

}  // namespace

std::string_view gemm_tile_name(GemmTile tile) {
  return tile_info(tile).name;
}

struct CudaGemm::State {
  int device = 0;
  int sm_count = 0;
  int cc_major = 0;
  int cc_minor = 0;
  bool hopper() const { return cc_major == 9 && cc_minor == 0; }  // the wgmma tile configs
  Status require_hopper() const {
    if (hopper()) return {};
    return Status::error("gemm (invariant): the wgmma tile configs need a Hopper GPU (sm_90); "
                         "device " + std::to_string(device) + " is sm_" +
                         std::to_string(cc_major) + std::to_string(cc_minor) +
                         ": run() takes the portable config there");
  }
  cublasHandle_t cublas = nullptr;
  DeviceBuffer cublas_workspace;
  DeviceBuffer tile_workspace;

  ~State() {
    if (cublas) cublasDestroy(cublas);
  }
};

Result<std::unique_ptr<CudaGemm>> CudaGemm::create(int device) {
  std::unique_ptr<CudaGemm> g(new CudaGemm());
  g->state_ = std::make_unique<State>();
  State& s = *g->state_;
  s.device = device;
  INVAR_RETURN_IF_ERROR(cuda_status(cudaSetDevice(device), "CudaGemm: cudaSetDevice"));
  INVAR_RETURN_IF_ERROR(cuda_status(
      cudaDeviceGetAttribute(&s.sm_count, cudaDevAttrMultiProcessorCount, device),
      "CudaGemm: reading the SM count"));
  INVAR_RETURN_IF_ERROR(cuda_status(
      cudaDeviceGetAttribute(&s.cc_major, cudaDevAttrComputeCapabilityMajor, device),
      "CudaGemm: reading the compute capability"));
  INVAR_RETURN_IF_ERROR(cuda_status(
      cudaDeviceGetAttribute(&s.cc_minor, cudaDevAttrComputeCapabilityMinor, device),
      "CudaGemm: reading the compute capability"));
  INVAR_RETURN_IF_ERROR(cublas_status(cublasCreate(&s.cublas), "CudaGemm: cublasCreate"));
  INVAR_RETURN_IF_ERROR(
      s.cublas_workspace.reserve(kCublasWorkspaceBytes, "CudaGemm: the cuBLAS workspace"));
  INVAR_RETURN_IF_ERROR(
      s.tile_workspace.reserve(kTileWorkspaceBytes, "CudaGemm: the tile-scheduler workspace"));
  INVAR_RETURN_IF_ERROR(cuda_status(cudaMemset(s.tile_workspace.as(), 0, kTileWorkspaceBytes),
                                    "CudaGemm: clearing the tile-scheduler workspace"));
  return Result<std::unique_ptr<CudaGemm>>(std::move(g));
}

CudaGemm::~CudaGemm() = default;

GemmTile CudaGemm::choose_tile(int64_t m, int64_t n, int64_t k, bool whole_tiles) {
  (void)k;
  // Decode sizes, tuned on an H100 with gemm_bench --all-tiles (bench/results/gemm-tuning-*).
  // Any choice gives the same bits (R2, gemm_test.cu), so all of this moves speed only.
  if (n < 2048 && m <= 32) return GemmTile::m64n32;  // few W rows: most CTAs per row of W
  // Swap-AB while its tiles fit in one wave: W streams once, x is barely padded. Past a
  // 64-row batch only for whole x tiles (a partial one costs more than its share).
  for (GemmTile t : {GemmTile::m16n64_swap, GemmTile::m32n64_swap, GemmTile::m64n64_swap}) {
    const TileInfo& i = tile_info(t);
    if (tile_count(i, m, n) <= kReferenceSmCount && (m <= 64 || m % i.bm == 0)) return t;
  }
  if (m <= 64) {  // decode on large N: many waves of W tiles whatever the config
    return m <= 16 ? GemmTile::m16n64_swap : m <= 32 ? GemmTile::m32n64_swap : GemmTile::m64n64_swap;
  }
  // Past decode: the best of a config's own speed (its share of the fastest config's rate
  // on full waves) times how well its tiles fill the waves. The efficiencies are fitted by
  // bench/cuda/fit_tile_choice.py to gemm_bench --all-tiles on an H200 (M = 96..2048, Qwen3-8B
  // and SmolLM2 shapes) and an H100 (M = 96..8192, Qwen3-8B and Llama-3-8B shapes) together
  // (gemm-notes.md, runs 5, 6 and 10): the odd-sized tiles win where their count lands just
  // under a whole number of waves (qkv at M = 384: 6144/192 x 384/96 = 128 CTAs, where
  // m128n192 leaves a third of the SMs idle; m128n96 at M = 256: 2 x 64 = 128), but not on
  // whole waves at large M, where m96n192_swap falls to ~430-560 TFLOP/s on an H100 (m128n256:
  // ~700).
  struct Candidate {
    GemmTile tile;
    double efficiency;
  };
  constexpr Candidate kCandidates[] = {
      {GemmTile::m96n192_swap, 0.92}, {GemmTile::m128n256, 0.94},     {GemmTile::m128n192, 0.92},
      {GemmTile::m128n128, 0.86},     {GemmTile::m96n128_swap, 0.68}, {GemmTile::m128n96, 0.67},
      {GemmTile::m64n192_swap, 0.66}, {GemmTile::m64n128, 0.62}};
  GemmTile best = kCandidates[0].tile;
  double best_score = -1.0;
  for (const Candidate& c : kCandidates) {
    // A 96-row x tile whose last one holds at most a third of its rows runs far slower than
    // its share on an H100 (M = 289: 1.6-2x the time of M = 288 on gate_up, down_proj and
    // lm_head; gemm-partial-tiles-h100-2026-12-07-532c18d.txt): TMA's zero fill of the rows
    // past x's end. Unless the last tile is computed whole (whole_tiles), such M take another
    // config.
    const TileInfo& info = tile_info(c.tile);
    if (!whole_tiles && info.bm == 96 && m % 96 != 0 && m % 96 <= 32) continue;
    const double score = c.efficiency * wave_fill(info, m, n);
    if (score > best_score + 1e-9) {
      best_score = score;
      best = c.tile;
    }
  }
  return best;
}

Status CudaGemm::run(const GemmProblem& p, KernelMode mode, cudaStream_t stream) {
  if (mode == KernelMode::invariant) {
    const State& s = *state_;
    if (s.hopper()) return run_tile(p, choose_tile(p.m, p.n, p.k, holds_whole_tiles(p)), stream);
    return run_portable(p, stream);
  }

  State& s = *state_;
  if (p.m < 0 || p.n < 0 || p.k < 0) return Status::error("gemm: negative dimension");
  if (p.m == 0 || p.n == 0 || p.batch == 0) return {};
  INVAR_RETURN_IF_ERROR(cublas_status(cublasSetStream(s.cublas, stream), "gemm: cublasSetStream"));
  INVAR_RETURN_IF_ERROR(
      cublas_status(cublasSetWorkspace(s.cublas, s.cublas_workspace.as(), kCublasWorkspaceBytes),
                    "gemm: cublasSetWorkspace"));
  // Row-major y[M,N] = x[M,K] W[N,K]^T is column-major y^T[N,M] = W^T x^T, as torch.mm
  // calls it.
  const float alpha = 1.0f;
  const float beta = 0.0f;
  if (p.batch != 1) {
    return cublas_status(cublasGemmStridedBatchedEx(
                             s.cublas, CUBLAS_OP_T, CUBLAS_OP_N, int(p.n), int(p.m), int(p.k),
                             &alpha, p.w, CUDA_R_16BF, int(p.ldw), p.batch_w, p.x, CUDA_R_16BF,
                             int(p.ldx), p.batch_x, &beta, p.y, CUDA_R_16BF, int(p.ldy), p.batch_y,
                             int(p.batch), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                         "gemm (fast): cublasGemmStridedBatchedEx");
  }
  return cublas_status(
      cublasGemmEx(s.cublas, CUBLAS_OP_T, CUBLAS_OP_N, int(p.n), int(p.m), int(p.k), &alpha, p.w,
                   CUDA_R_16BF, int(p.ldw), p.x, CUDA_R_16BF, int(p.ldx), &beta, p.y, CUDA_R_16BF,
                   int(p.ldy), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
      "gemm (fast): cublasGemmEx");
}

using InvariantLaunch = const char* (*)(const sm90::GemmArgs&, cudaStream_t);

// Both invariant paths: checks the problem, writes the empty cases itself (nothing for an empty
// y, exact zeros for K = 0), else enqueues `launch`. `what` names the path in errors. y holds
// y_width columns: N, or N / 2 where the epilogue writes silu_mul of gate/up pairs (and zeros
// of K = 0 are silu_mul's zeros too).
// A batch runs as one launch where `batched` (the Hopper configs), else one launch per GEMM.
static Status launch_invariant(const GemmProblem& p, int64_t y_width, int device, int sm_count,
                               void* workspace, InvariantLaunch launch, const std::string& what,
                               cudaStream_t stream, bool batched = true) {
  if (p.batch < 0 || p.batch > 65535) return Status::error(what + ": batch outside 0..65535");
  if (p.batch == 0) return {};
  if (p.batch > 1 && (p.batch_x % 8 || p.batch_w % 8 || p.batch_y % 8))
    return Status::error(what + ": batch strides must be multiples of 8 elements");
  if (p.batch > 1 && (!batched || p.k == 0)) {
    for (int64_t i = 0; i < p.batch; ++i) {
      GemmProblem one = p;
      one.batch = 1;
      one.x = static_cast<const char*>(p.x) + i * p.batch_x * 2;
      one.w = static_cast<const char*>(p.w) + i * p.batch_w * 2;
      one.y = static_cast<char*>(p.y) + i * p.batch_y * 2;
      INVAR_RETURN_IF_ERROR(
          launch_invariant(one, y_width, device, sm_count, workspace, launch, what, stream));
    }
    return {};
  }
  if (p.m < 0 || p.n < 0 || p.k < 0) return Status::error("gemm: negative dimension");
  if (p.m > INT32_MAX || p.n > INT32_MAX || p.k > INT32_MAX) {
    return Status::error(what + ": a dimension is over 2^31 - 1");
  }
  if (p.m == 0 || p.n == 0) return {};
  if (p.k == 0) {  // empty sum: exact zeros
    return cuda_status(cudaMemset2DAsync(p.y, size_t(p.ldy) * 2, 0, size_t(y_width) * 2,
                                         size_t(p.m), stream),
                       "gemm (invariant): zeroing y for K = 0");
  }
  if (p.k % 8 || p.n % 8 || p.ldx % 8 || p.ldw % 8 || p.ldy % 8 || !aligned16(p.x) ||
      !aligned16(p.w) || !aligned16(p.y)) {
    return Status::error(
        what + ": TMA needs K, N and the leading dimensions to be multiples of 8 and "
        "x, W, y 16-byte aligned; got M=" + std::to_string(p.m) + " N=" + std::to_string(p.n) +
        " K=" + std::to_string(p.k) + ". Pad the weight and activation rows to a multiple of 8.");
  }
  if (p.ldx < p.k || p.ldw < p.k || p.ldy < y_width) {
    return Status::error(what + ": a leading dimension is smaller than its row");
  }
  const sm90::GemmArgs a{.x = p.x,
                         .ldx = p.ldx,
                         .w = p.w,
                         .ldw = p.ldw,
                         .y = p.y,
                         .ldy = p.ldy,
                         .m = int(p.m),
                         .n = int(p.n),
                         .k = int(p.k),
                         .device = device,
                         .sm_count = sm_count,
                         .workspace = workspace,
                         .workspace_bytes = kTileWorkspaceBytes,
                         .batch = int(p.batch),
                         .batch_x = p.batch_x,
                         .batch_w = p.batch_w,
                         .batch_y = p.batch_y};
  if (const char* err = launch(a, stream)) return Status::error(what + ": " + err);
  return cuda_status(cudaGetLastError(), what + ": kernel launch");
}

// p with m rounded up to `tile`'s last x-tile edge (its cluster's, where clusters run along x)
// where p.row_capacity holds those rows: see GemmProblem::row_capacity.
static GemmProblem padded_to_tile_edge(const GemmProblem& p, const TileInfo& tile) {
  const bool clusters_along_x = tile.cluster > 1;  // the non-swap configs' M is x's rows
  const int64_t edge = tile.bm * (clusters_along_x ? tile.cluster : 1);
  const int64_t padded = ceil_div(p.m, edge) * edge;
  GemmProblem q = p;
  if (p.batch == 1 && p.m > 0 && padded <= p.row_capacity) q.m = padded;
  return q;
}

Status CudaGemm::run_tile(const GemmProblem& p, GemmTile tile, cudaStream_t stream) {
  State& s = *state_;
  INVAR_RETURN_IF_ERROR(s.require_hopper());
  return launch_invariant(padded_to_tile_edge(p, tile_info(tile)), p.n, s.device, s.sm_count,
                          s.tile_workspace.as(), tile_info(tile).launch,
                          "gemm (invariant, " + std::string(gemm_tile_name(tile)) + ")", stream);
}

bool CudaGemm::fuses_gate_up(GemmTile tile) { return tile_info(tile).launch_gate_up != nullptr; }

// The gate/up GEMM into p.scratch, as one GEMM of N = 2I.
// The gate/up GEMM as one GEMM of N = 2I writing `y` (row stride ldy): the scratch [M, 2I] on
// the unfused paths, h [M, I] where the epilogue folds each gate/up pair into one value.
static GemmProblem gate_up_gemm(const GateUpProblem& p, void* y, int64_t ldy) {
  return GemmProblem{.x = p.x,
                     .ldx = p.ldx,
                     .w = p.w,
                     .ldw = p.ldw,
                     .y = y,
                     .ldy = ldy,
                     .m = p.m,
                     .n = 2 * p.inter,
                     .k = p.k,
                     .row_capacity = p.row_capacity};
}

static Status check_gate_up(const GateUpProblem& p) {
  if (p.inter < 0 || p.inter % kGateUpBlock) {
    return Status::error("gemm (gate/up): the intermediate size must be a multiple of 8, got " +
                         std::to_string(p.inter));
  }
  return {};
}

static Status silu_mul_after(const GateUpProblem& p, cudaStream_t stream) {
  return silu_mul_paired(static_cast<const __nv_bfloat16*>(p.scratch), 2 * p.inter, p.m, p.inter,
                         static_cast<__nv_bfloat16*>(p.h), p.ldh, stream);
}

Status CudaGemm::run_gate_up(const GateUpProblem& p, KernelMode mode, cudaStream_t stream,
                             bool fuse) {
  if (mode == KernelMode::invariant && state_->hopper()) {
    const bool whole = holds_whole_tiles(gate_up_gemm(p, p.scratch, 2 * p.inter));
    return run_gate_up_tile(p, choose_tile(p.m, 2 * p.inter, p.k, whole), fuse, stream);
  }
  INVAR_RETURN_IF_ERROR(check_gate_up(p));
  INVAR_RETURN_IF_ERROR(run(gate_up_gemm(p, p.scratch, 2 * p.inter), mode, stream));
  return silu_mul_after(p, stream);
}

Status CudaGemm::run_gate_up_tile(const GateUpProblem& p, GemmTile tile, bool fused,
                                  cudaStream_t stream) {
  INVAR_RETURN_IF_ERROR(check_gate_up(p));
  const TileInfo& info = tile_info(tile);
  if (!fused || !info.launch_gate_up) {
    INVAR_RETURN_IF_ERROR(run_tile(gate_up_gemm(p, p.scratch, 2 * p.inter), tile, stream));
    return silu_mul_after(p, stream);
  }
  State& s = *state_;
  INVAR_RETURN_IF_ERROR(s.require_hopper());
  const GemmProblem fused_problem = padded_to_tile_edge(gate_up_gemm(p, p.h, p.ldh), info);
  return launch_invariant(
      fused_problem, p.inter, s.device, s.sm_count, s.tile_workspace.as(), info.launch_gate_up,
      "gemm + silu_mul (invariant, " + std::string(gemm_tile_name(tile)) + ")", stream);
}

Status CudaGemm::run_portable(const GemmProblem& p, cudaStream_t stream) {
  State& s = *state_;
  if (s.cc_major < 8) {
    return Status::error("gemm (invariant): needs sm_80 or newer; device " +
                         std::to_string(s.device) + " is sm_" + std::to_string(s.cc_major) +
                         std::to_string(s.cc_minor) + ". Use KernelMode::fast there.");
  }
  return launch_invariant(p, p.n, s.device, s.sm_count, s.tile_workspace.as(), sm80::gemm_m128n128,
                          "gemm (invariant, portable)", stream, /*batched=*/false);
}

}  // namespace invar::kernels::cuda
