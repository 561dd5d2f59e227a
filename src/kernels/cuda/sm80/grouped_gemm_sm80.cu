// The grouped expert GEMM (grouped_gemm.h) on CUTLASS 2.x's grouped kernel: a persistent grid
// whose CTAs walk the tiles of every group, the group sizes read on the device
// (GroupScheduleMode::kDeviceOnly). The mainloop is the portable GEMM's (gemm_sm80.cu): same
// tile shapes, one K chain per element, no split of K; the epilogue computes 1 * acc and rounds
// once.
#include <cutlass/bfloat16.h>
#include <cutlass/cutlass.h>
#include <cutlass/epilogue/thread/linear_combination.h>
#include <cutlass/gemm/device/gemm_grouped.h>
#include <cutlass/gemm/kernel/default_gemm_grouped.h>

#include "kernels/cuda/device.h"
#include "kernels/cuda/grouped_gemm.h"

namespace invar::kernels::cuda {
namespace {

using Element = cutlass::bfloat16_t;
using Epilogue = cutlass::epilogue::thread::LinearCombination<
    Element, 8, float, float, cutlass::epilogue::thread::ScaleType::OnlyAlphaScaling>;
using GroupedKernel = typename cutlass::gemm::kernel::DefaultGemmGrouped<
    Element, cutlass::layout::RowMajor, cutlass::ComplexTransform::kNone, 8,     // x [R, K]
    Element, cutlass::layout::ColumnMajor, cutlass::ComplexTransform::kNone, 8,  // W_g [N, K]
    Element, cutlass::layout::RowMajor,                                          // y [R, N]
    float, cutlass::arch::OpClassTensorOp, cutlass::arch::Sm80,
    cutlass::gemm::GemmShape<128, 128, 32>, cutlass::gemm::GemmShape<64, 64, 32>,
    cutlass::gemm::GemmShape<16, 8, 16>, Epilogue,
    cutlass::gemm::threadblock::GemmBatchedIdentityThreadblockSwizzle, 3,
    cutlass::gemm::kernel::GroupScheduleMode::kDeviceOnly>::GemmKernel;
using Grouped = cutlass::gemm::device::GemmGrouped<GroupedKernel>;

static_assert(GroupedKernel::Mma::Base::WarpCount::kK == 1,
              "a warp must own whole K chains (no intra-CTA split of K)");

using Coord = cutlass::gemm::GemmCoord;
using Stride = int64_t;

// The workspace: 4 pointer arrays, 4 stride arrays, then the problem sizes, each [G].
struct Workspace {
  Element** a;
  Element** b;
  Element** c;
  Element** d;
  Stride* lda;
  Stride* ldb;
  Stride* ldc;
  Stride* ldd;
  Coord* sizes;
};

Workspace carve(void* base, int groups) {
  auto* p = static_cast<unsigned char*>(base);
  const size_t g = size_t(groups);
  Workspace w{};
  w.a = reinterpret_cast<Element**>(p);
  w.b = w.a + g;
  w.c = w.b + g;
  w.d = w.c + g;
  w.lda = reinterpret_cast<Stride*>(w.d + g);
  w.ldb = w.lda + g;
  w.ldc = w.ldb + g;
  w.ldd = w.ldc + g;
  w.sizes = reinterpret_cast<Coord*>(w.ldd + g);
  return w;
}

// One thread per group: its rows, operands and strides.
__global__ void describe_groups_kernel(Workspace ws, int groups, const int32_t* starts,
                                       const Element* x, int64_t ldx, const Element* w,
                                       Element* y, int64_t ldy, int n, int k) {
  const int g = blockIdx.x * blockDim.x + threadIdx.x;
  if (g >= groups) return;
  const int32_t first = starts[g], rows = starts[g + 1] - first;
  ws.sizes[g] = Coord(rows, n, k);
  ws.a[g] = const_cast<Element*>(x) + int64_t(first) * ldx;
  ws.b[g] = const_cast<Element*>(w) + int64_t(g) * n * k;
  ws.c[g] = y + int64_t(first) * ldy;
  ws.d[g] = ws.c[g];
  ws.lda[g] = ldx;
  ws.ldb[g] = k;
  ws.ldc[g] = ldy;
  ws.ldd[g] = ldy;
}

}  // namespace

size_t grouped_gemm_workspace_bytes(int groups) {
  return size_t(groups) * (4 * sizeof(Element*) + 4 * sizeof(Stride) + sizeof(Coord));
}

Result<int> grouped_gemm_ctas(int device) {
  int sms = 0;
  INVAR_RETURN_IF_ERROR(
      cuda_status(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device),
                  "grouped_gemm: SM count"));
  const int per_sm = Grouped::maximum_active_blocks();
  if (per_sm <= 0) return Status::error("grouped_gemm: the kernel cannot be resident on an SM");
  return sms * per_sm;
}

Status grouped_gemm(const GroupedGemmProblem& p, int ctas, cudaStream_t stream) {
  if (p.groups <= 0) return Status();
  if (p.k % 8 || p.n % 8 || p.ldx % 8 || p.ldy % 8)
    return Status::errorf("grouped_gemm: K {}, N {} and the row strides must be multiples of 8",
                          p.k, p.n);
  const Workspace ws = carve(p.workspace, p.groups);
  describe_groups_kernel<<<unsigned((p.groups + 127) / 128), 128, 0, stream>>>(
      ws, p.groups, p.starts, static_cast<const Element*>(p.x), p.ldx,
      static_cast<const Element*>(p.w), static_cast<Element*>(p.y), p.ldy, int(p.n), int(p.k));
  INVAR_RETURN_IF_ERROR(cuda_status(cudaGetLastError(), "grouped_gemm: describe launch"));
  Grouped::Arguments args(ws.sizes, p.groups, ctas, {1.0f}, ws.a, ws.b, ws.c, ws.d, ws.lda,
                          ws.ldb, ws.ldc, ws.ldd);
  Grouped gemm;
  if (gemm.initialize(args, nullptr, stream) != cutlass::Status::kSuccess)
    return Status::error("grouped_gemm: initialize failed");
  if (gemm.run(stream) != cutlass::Status::kSuccess)
    return Status::error("grouped_gemm: launch failed");
  return cuda_status(cudaGetLastError(), "grouped_gemm: kernel launch");
}

}  // namespace invar::kernels::cuda
