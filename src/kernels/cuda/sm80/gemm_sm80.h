// The portable invariant GEMM: Ampere-class tensor cores (mma.sync m16n8k16), for every NVIDIA
// GPU from sm_80 on that is not a Hopper sm_90 (which runs the wgmma configs of sm90/).
// Called by kernels/cuda/gemm.cu.
#pragma once

#include <cuda_runtime_api.h>

#include "kernels/cuda/sm90/gemm_sm90.h"

namespace invar::kernels::cuda::sm80 {

// One tile config for every M: 128 x 128 CTA tiles, 64 x 64 warp tiles, k = 32 per stage.
// Returns nullptr once the kernel is enqueued, or a message saying what was refused.
const char* gemm_m128n128(const sm90::GemmArgs& a, cudaStream_t stream);

}  // namespace invar::kernels::cuda::sm80
