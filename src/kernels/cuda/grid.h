// Launch arithmetic shared by the CUDA launchers and their host-side planners. Plain C++ (no
// CUDA headers): the planners are compiled, and unit-tested, in the CPU-only build too.
#pragma once

#include <cstdint>

namespace invar::kernels::cuda {

// SMs of a full H100 or H200 (SXM). Tile, split and grid choices that size themselves to the
// GPU use this constant, never the device's own count: R5 lets a heuristic see model shapes and
// the batch (where tests prove the choice bit-neutral), never the device, so the same build
// makes the same choices on every GPU of the architecture. Elsewhere the choices are merely
// less tuned.
inline constexpr int64_t kReferenceSmCount = 132;

constexpr int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

constexpr bool aligned_to(const void* p, uintptr_t bytes) {
  return (reinterpret_cast<uintptr_t>(p) & (bytes - 1)) == 0;
}
// What TMA, cp.async and 16-byte vector accesses need.
constexpr bool aligned16(const void* p) {
  return aligned_to(p, 16);
}

}  // namespace invar::kernels::cuda
