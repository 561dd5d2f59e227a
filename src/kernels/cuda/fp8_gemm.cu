// FP8 GEMM on Hopper (interface and recipe: fp8_gemm.h): the activation quantizer, the
// invariant tile configs of sm90/ and the cuBLASLt block-scaled fast path.
//   M = rows of x, N = rows of W, K = input features, KB = K / 128, Mp = fp8_scale_stride(M)
#include <cublasLt.h>
#include <cuda_fp8.h>

#include <cstdio>
#include <iterator>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <utility>

#include "kernels/cuda/device.h"
#include "kernels/cuda/fp8_gemm.h"
#include "kernels/cuda/grid.h"
#include "kernels/cuda/sm90/fp8_gemm_sm90.h"

namespace invar::kernels::cuda {
namespace {

constexpr size_t kLtWorkspaceBytes = size_t(32) << 20;
constexpr size_t kTileWorkspaceBytes = size_t(1) << 20;
constexpr int kQuantWarps = 8;  // warps per block of the quantizer; one (row, K block) each

// One warp per (token, 128-column block): each lane holds 4 values; the block's amax is a
// butterfly of maxima (exact in any order), so scale and codes depend on this row alone.
__global__ void quantize_fp8_rows_kernel(const __nv_bfloat16* __restrict__ x, int64_t ldx,
                                         int64_t m, int64_t mp, int64_t k,
                                         uint8_t* __restrict__ codes, float* __restrict__ scales) {
  const int64_t kb_count = k / kFp8Block;
  const int64_t item = int64_t(blockIdx.x) * kQuantWarps + threadIdx.x / 32;
  if (item >= mp * kb_count) return;
  const int64_t row = item / kb_count, kb = item % kb_count;
  const int lane = threadIdx.x % 32;
  const int64_t col = kb * kFp8Block + lane * 4;
  uint8_t* out = codes + row * k + col;
  if (row >= m) {  // padding rows: zero codes, zero scale
    *reinterpret_cast<uint32_t*>(out) = 0;
    if (lane == 0) scales[kb * mp + row] = 0.0f;
    return;
  }
  float v[4];
  float amax = 0.0f;
  for (int i = 0; i < 4; ++i) {
    v[i] = __bfloat162float(x[row * ldx + col + i]);
    amax = fmaxf(amax, fabsf(v[i]));
  }
  for (int offset = 16; offset > 0; offset /= 2) {
    amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, offset));
  }
  const float scale = __fdiv_rn(fmaxf(amax, 1e-10f), kFp8E4m3Max);
  uint32_t packed = 0;
  for (int i = 0; i < 4; ++i) {
    const __nv_fp8_storage_t c =
        __nv_cvt_float_to_fp8(__fdiv_rn(v[i], scale), __NV_SATFINITE, __NV_E4M3);
    packed |= uint32_t(c) << (8 * i);
  }
  *reinterpret_cast<uint32_t*>(out) = packed;
  if (lane == 0) scales[kb * mp + row] = scale;
}

Status lt_status(cublasStatus_t s, const char* what) {
  if (s == CUBLAS_STATUS_SUCCESS) return {};
  return Status::error(std::string(what) + ": " + cublasGetStatusString(s));
}

using TileLaunch = const char* (*)(const sm90::Fp8GemmArgs&, cudaStream_t);

struct TileInfo {
  Fp8GemmTile tile;
  std::string_view name;
  TileLaunch launch;
  int max_swizzle = 1;  // the order the persistent scheduler visits tiles in
};

// Indexed by Fp8GemmTile; the static_asserts keep it complete and in order.
constexpr TileInfo kTiles[] = {
    {Fp8GemmTile::m32n128_swap, "m32n128_swap", sm90::fp8_gemm_m32n128_swap},
    {Fp8GemmTile::m64n128_swap, "m64n128_swap", sm90::fp8_gemm_m64n128_swap},
    {Fp8GemmTile::m64n128, "m64n128", sm90::fp8_gemm_m64n128},
    {Fp8GemmTile::m128n128, "m128n128", sm90::fp8_gemm_m128n128},
    {Fp8GemmTile::m128n128_swizzle8, "m128n128_swizzle8", sm90::fp8_gemm_m128n128, 8},
};
static_assert(std::size(kTiles) == size_t(kFp8GemmTileCount), "one entry per Fp8GemmTile");
constexpr bool registry_in_enum_order() {
  for (size_t i = 0; i < std::size(kTiles); ++i) {
    if (kTiles[i].tile != Fp8GemmTile(i) || kTiles[i].launch == nullptr) return false;
  }
  return true;
}
static_assert(registry_in_enum_order(), "kTiles[i] must describe Fp8GemmTile(i)");

// The scale pointers of p on a cuBLASLt descriptor: W's (A) and x's (B).
Status set_lt_scale_pointers(cublasLtMatmulDesc_t desc, const Fp8GemmProblem& p) {
  const void* scale_a = p.w.scales_lt;
  const void* scale_b = p.x_scales;
  INVAR_RETURN_IF_ERROR(
      lt_status(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER,
                                               &scale_a, sizeof(scale_a)),
                "fp8 gemm (fast): W scales"));
  return lt_status(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER,
                                                  &scale_b, sizeof(scale_b)),
                   "fp8 gemm (fast): x scales");
}

Status check_problem(const Fp8GemmProblem& p, const char* what) {
  const Fp8Weight& w = p.w;
  if (p.m < 0 || w.n <= 0 || w.k <= 0 || w.n % kFp8Block || w.k % kFp8Block) {
    return Status::error(std::string(what) + ": N and K must be positive multiples of 128, got N=" +
                         std::to_string(w.n) + " K=" + std::to_string(w.k));
  }
  if (p.m > INT32_MAX || w.n > INT32_MAX || w.k > INT32_MAX) {
    return Status::error(std::string(what) + ": a dimension is over 2^31 - 1");
  }
  if (p.ldx < w.k || w.ldw < w.k || p.ldy < w.n || p.ldx % 16 || w.ldw % 16 || p.ldy % 8 ||
      !aligned16(p.x) || !aligned16(w.codes) || !aligned16(p.y) || !aligned16(p.x_scales) ||
      !aligned16(w.scales)) {
    return Status::error(std::string(what) +
                         ": rows must be at least K (x, W) or N (y) long, strides multiples of "
                         "16 bytes and pointers 16-byte aligned");
  }
  return {};
}

}  // namespace

std::string_view fp8_gemm_tile_name(Fp8GemmTile tile) {
  return kTiles[size_t(tile)].name;
}

Status quantize_fp8_rows(const __nv_bfloat16* x, int64_t ldx, int64_t m, int64_t k, uint8_t* codes,
                         float* scales, cudaStream_t stream) {
  if (m < 0 || k <= 0 || k % kFp8Block || ldx < k) {
    return Status::error(
        "quantize_fp8_rows: K must be a positive multiple of 128 and ldx >= K, "
        "got M=" +
        std::to_string(m) + " K=" + std::to_string(k));
  }
  const int64_t mp = fp8_scale_stride(m);
  const int64_t items = mp * (k / kFp8Block);
  if (items == 0) return {};
  quantize_fp8_rows_kernel<<<unsigned(ceil_div(items, kQuantWarps)), kQuantWarps * 32, 0, stream>>>(
      x, ldx, m, mp, k, codes, scales);
  return cuda_status(cudaGetLastError(), "quantize_fp8_rows: kernel launch");
}

struct CudaFp8Gemm::State {
  int device = 0;
  int sm_count = 0;
  bool hopper = false;
  cublasLtHandle_t lt = nullptr;
  DeviceBuffer lt_workspace;
  DeviceBuffer tile_workspace;
  // cuBLASLt's choice per (Mp, N, K, strides), asked once: its heuristic is a host call that
  // must not run on every step.
  struct LtPlan {
    cublasLtMatmulDesc_t desc = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
    cublasLtMatmulAlgo_t algo{};
    void release() {
      if (a) cublasLtMatrixLayoutDestroy(a);
      if (b) cublasLtMatrixLayoutDestroy(b);
      if (d) cublasLtMatrixLayoutDestroy(d);
      if (desc) cublasLtMatmulDescDestroy(desc);
    }
  };
  std::map<std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t>, LtPlan> lt_plans;
  // Shapes for which cuBLASLt found no block-scaled FP8 algorithm (lt_plan gives null there:
  // fast mode runs the invariant kernel), and whether the last fast run was cuBLASLt's.
  std::set<std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t>> lt_absent;
  bool last_fast_lt = true;

  ~State() {
    for (auto& [shape, plan] : lt_plans) plan.release();
    if (lt) cublasLtDestroy(lt);
  }

  // The plan for p's shape; null where cuBLASLt has no algorithm for it.
  Result<const LtPlan*> lt_plan(const Fp8GemmProblem& p);
};

// Column-major, as cuBLASLt sees the row-major operands: A = W^T (TRANSA: W [N, K] is K x N),
// B = x as K x Mp, D = y^T as N x Mp. The scales: A's per 128 x 128 block, [NB, KB4]; B's per
// token per 128 of K, one run of Mp per K block, as quantize_fp8_rows writes them.
Result<const CudaFp8Gemm::State::LtPlan*> CudaFp8Gemm::State::lt_plan(const Fp8GemmProblem& p) {
  const int64_t mp = fp8_scale_stride(p.m), n = p.w.n, k = p.w.k;
  const auto key = std::make_tuple(mp, n, k, p.ldx, p.w.ldw, p.ldy);
  if (auto it = lt_plans.find(key); it != lt_plans.end()) return &it->second;
  if (lt_absent.count(key)) return nullptr;
  LtPlan plan;
  auto fail = [&](Status s) {
    plan.release();
    return Result<const LtPlan*>(std::move(s));
  };
  Status s = lt_status(cublasLtMatmulDescCreate(&plan.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F),
                       "fp8 gemm (fast): cublasLtMatmulDescCreate");
  if (!s.ok()) return fail(s);
  const cublasOperation_t trans_a = CUBLAS_OP_T, trans_b = CUBLAS_OP_N;
  const int32_t mode_a = CUBLASLT_MATMUL_MATRIX_SCALE_BLK128x128_32F;
  const int32_t mode_b = CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F;
  const auto set = [&](cublasLtMatmulDescAttributes_t attr, const void* v, size_t bytes) {
    return lt_status(cublasLtMatmulDescSetAttribute(plan.desc, attr, v, bytes),
                     "fp8 gemm (fast): cublasLtMatmulDescSetAttribute");
  };
  // The heuristic refuses a block-scaled mode whose scale pointer is unset (status "an
  // unsupported value", seen on an H200 with cuBLAS 13), so this problem's pointers are set
  // here too; run() sets them again for every call.
  for (Status st : {set(CUBLASLT_MATMUL_DESC_TRANSA, &trans_a, sizeof(trans_a)),
                    set(CUBLASLT_MATMUL_DESC_TRANSB, &trans_b, sizeof(trans_b)),
                    set(CUBLASLT_MATMUL_DESC_A_SCALE_MODE, &mode_a, sizeof(mode_a)),
                    set(CUBLASLT_MATMUL_DESC_B_SCALE_MODE, &mode_b, sizeof(mode_b)),
                    set_lt_scale_pointers(plan.desc, p)}) {
    if (!st.ok()) return fail(st);
  }
  s = lt_status(
      cublasLtMatrixLayoutCreate(&plan.a, CUDA_R_8F_E4M3, uint64_t(k), uint64_t(n), p.w.ldw),
      "fp8 gemm (fast): layout of W");
  if (!s.ok()) return fail(s);
  s = lt_status(
      cublasLtMatrixLayoutCreate(&plan.b, CUDA_R_8F_E4M3, uint64_t(k), uint64_t(mp), p.ldx),
      "fp8 gemm (fast): layout of x");
  if (!s.ok()) return fail(s);
  s = lt_status(cublasLtMatrixLayoutCreate(&plan.d, CUDA_R_16BF, uint64_t(n), uint64_t(mp), p.ldy),
                "fp8 gemm (fast): layout of y");
  if (!s.ok()) return fail(s);

  cublasLtMatmulPreference_t pref = nullptr;
  s = lt_status(cublasLtMatmulPreferenceCreate(&pref), "fp8 gemm (fast): preference");
  if (!s.ok()) return fail(s);
  const uint64_t ws = kLtWorkspaceBytes;
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                       sizeof(ws));
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  const cublasStatus_t hs = cublasLtMatmulAlgoGetHeuristic(lt, plan.desc, plan.a, plan.b, plan.d,
                                                           plan.d, pref, 1, &result, &found);
  cublasLtMatmulPreferenceDestroy(pref);
  if (hs != CUBLAS_STATUS_SUCCESS || found == 0) {
    if (lt_absent.empty())
      std::fprintf(stderr,
                   "invar: fp8 gemm (fast): cuBLASLt has no block-scaled FP8 algorithm for M=%lld "
                   "N=%lld K=%lld (%s); fast mode runs the invariant FP8 kernel there\n",
                   static_cast<long long>(p.m), static_cast<long long>(n),
                   static_cast<long long>(k), cublasGetStatusString(hs));
    lt_absent.insert(key);
    plan.release();
    return nullptr;
  }
  plan.algo = result.algo;
  return &lt_plans.emplace(key, plan).first->second;
}

Result<std::unique_ptr<CudaFp8Gemm>> CudaFp8Gemm::create(int device) {
  std::unique_ptr<CudaFp8Gemm> g(new CudaFp8Gemm());
  g->state_ = std::make_unique<State>();
  State& s = *g->state_;
  s.device = device;
  int major = 0, minor = 0;
  INVAR_RETURN_IF_ERROR(cuda_status(cudaSetDevice(device), "CudaFp8Gemm: cudaSetDevice"));
  INVAR_RETURN_IF_ERROR(
      cuda_status(cudaDeviceGetAttribute(&s.sm_count, cudaDevAttrMultiProcessorCount, device),
                  "CudaFp8Gemm: reading the SM count"));
  INVAR_RETURN_IF_ERROR(
      cuda_status(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device),
                  "CudaFp8Gemm: reading the compute capability"));
  INVAR_RETURN_IF_ERROR(
      cuda_status(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device),
                  "CudaFp8Gemm: reading the compute capability"));
  s.hopper = major == 9 && minor == 0;
  INVAR_RETURN_IF_ERROR(lt_status(cublasLtCreate(&s.lt), "CudaFp8Gemm: cublasLtCreate"));
  INVAR_RETURN_IF_ERROR(
      s.lt_workspace.reserve(kLtWorkspaceBytes, "CudaFp8Gemm: the cuBLASLt workspace"));
  INVAR_RETURN_IF_ERROR(
      s.tile_workspace.reserve(kTileWorkspaceBytes, "CudaFp8Gemm: the tile-scheduler workspace"));
  INVAR_RETURN_IF_ERROR(cuda_status(cudaMemset(s.tile_workspace.as(), 0, kTileWorkspaceBytes),
                                    "CudaFp8Gemm: clearing the tile-scheduler workspace"));
  return Result<std::unique_ptr<CudaFp8Gemm>>(std::move(g));
}

CudaFp8Gemm::~CudaFp8Gemm() = default;

bool CudaFp8Gemm::fast_is_cublaslt() const { return state_->last_fast_lt; }

Fp8GemmTile CudaFp8Gemm::choose_tile(int64_t m, int64_t n) {
  // Speed only: every config gives the same bits (fp8_gemm_test), so the choice may follow the
  // shape (R5: never the device). Fitted to fp8_gemm_bench --all-tiles on an H100, Qwen3-8B's
  // shapes (bench/results/fp8-gemm-tiles-h100-2026-12-07-*.txt):
  //   - swap-AB with 32-token x tiles while they fit one wave (up to 128 tokens on 32 W tiles:
  //     o_proj and down_proj at M = 128 run 1.17-1.35x of cuBLASLt, m64n128 0.96);
  //   - else swap-AB with 64-token tiles to M = 64, then m64n128 to M = 128;
  //   - between 128 and 256 tokens, m128n128 where it needs fewer waves than m64n128 (qkv at
  //     M = 256: one wave of 96 CTAs, 1.01x, against two waves of 192, 0.70x);
  //   - tiles visited in swizzled bands of 8 row tiles where the row tiles make whole bands
  //     (M = 1024, 2048, 3072, ...: gate_up at M = 8192 1.01x against 0.92x); with a partial
  //     band it loses badly (gate_up at M = 1536, 12 row tiles: 0.52x against 1.02x).
  const int64_t w_tiles = ceil_div(n, 128);
  const auto waves = [&](int64_t bm) {
    return ceil_div(w_tiles * ceil_div(m, bm), kReferenceSmCount);
  };
  if (m <= 32 || (m <= 128 && waves(32) == 1)) return Fp8GemmTile::m32n128_swap;
  if (m <= 64) return Fp8GemmTile::m64n128_swap;
  if (m <= 128 || (m <= 256 && waves(64) <= waves(128))) return Fp8GemmTile::m64n128;
  const int64_t row_tiles = ceil_div(m, 128);
  return row_tiles % 8 == 0 ? Fp8GemmTile::m128n128_swizzle8 : Fp8GemmTile::m128n128;
}

Status CudaFp8Gemm::run(const Fp8GemmProblem& p, KernelMode mode, cudaStream_t stream) {
  if (mode == KernelMode::invariant) return run_tile(p, choose_tile(p.m, p.w.n), stream);
  INVAR_RETURN_IF_ERROR(check_problem(p, "fp8 gemm (fast)"));
  if (p.m == 0) return {};
  State& s = *state_;
  INVAR_ASSIGN_OR_RETURN(const State::LtPlan* plan, s.lt_plan(p));
  s.last_fast_lt = plan != nullptr;
  if (!plan) return run_tile(p, choose_tile(p.m, p.w.n), stream);
  const State::LtPlan& lp = *plan;
  INVAR_RETURN_IF_ERROR(set_lt_scale_pointers(lp.desc, p));
  const float alpha = 1.0f, beta = 0.0f;
  return lt_status(
      cublasLtMatmul(s.lt, lp.desc, &alpha, p.w.codes, lp.a, p.x, lp.b, &beta, p.y, lp.d, p.y, lp.d,
                     &lp.algo, s.lt_workspace.as(), kLtWorkspaceBytes, stream),
      "fp8 gemm (fast): cublasLtMatmul");
}

Status CudaFp8Gemm::run_tile(const Fp8GemmProblem& p, Fp8GemmTile tile, cudaStream_t stream) {
  State& s = *state_;
  const std::string what = "fp8 gemm (invariant, " + std::string(fp8_gemm_tile_name(tile)) + ")";
  if (!s.hopper) {
    return Status::error(what +
                         ": the FP8 tile configs need a Hopper GPU (sm_90); use the "
                         "bf16 weights elsewhere");
  }
  INVAR_RETURN_IF_ERROR(check_problem(p, what.c_str()));
  if (p.m == 0) return {};
  const sm90::Fp8GemmArgs a{.x = p.x,
                            .ldx = p.ldx,
                            .x_scales = p.x_scales,
                            .w = p.w.codes,
                            .ldw = p.w.ldw,
                            .w_scales = p.w.scales,
                            .y = p.y,
                            .ldy = p.ldy,
                            .m = int(p.m),
                            .n = int(p.w.n),
                            .k = int(p.w.k),
                            .scale_rows = int(fp8_scale_stride(p.m)),
                            .device = s.device,
                            .sm_count = s.sm_count,
                            .max_swizzle = kTiles[size_t(tile)].max_swizzle,
                            .workspace = s.tile_workspace.as(),
                            .workspace_bytes = kTileWorkspaceBytes};
  if (const char* err = kTiles[size_t(tile)].launch(a, stream)) {
    return Status::error(what + ": " + err);
  }
  return cuda_status(cudaGetLastError(), what + ": kernel launch");
}

}  // namespace invar::kernels::cuda
