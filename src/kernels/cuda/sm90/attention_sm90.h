// The Hopper (sm_90a) attention kernel: the work items of attention_plan.h computed with wgmma
// and TMA, for the same bits as the mma.sync kernel of attention.cu (recipe: attention.h and
// attention_recipe.cuh). CudaAttention chooses it (set_prefill_kernel); host code only here.
//   S = sequences, Hkv = kv heads, D = head dim (64 or 128), G = q heads per kv head
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

#include "core/status.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/attention_plan.h"

namespace invar::kernels::cuda::sm90 {

// TMA descriptors of one layer's paged K and V caches (two CUtensorMap, kept opaque so this
// header needs no driver API). box_rows: cache rows per TMA copy (a page, or 64 rows of a page of
// >= 64); 0 when the block size suits no TMA box (not a multiple of 8 that divides 64 or is a
// multiple of 64): the kernel then gathers every tile with cp.async, slower but the same bits.
struct KvTensorMaps {
  alignas(64) unsigned char k[128];
  alignas(64) unsigned char v[128];
  int box_rows = 0;
};

// Encodes the maps for `cache` (host only, no device call; cheap enough per launch, cached by
// CudaAttention per layer anyway).
Status encode_kv_tensor_maps(const KvCacheRef& cache, KvTensorMaps* maps);

struct AttentionWgmmaArgs {
  const AttnItem* items = nullptr;  // device, n_items of them
  int64_t n_items = 0;
  const __nv_bfloat16* q = nullptr;  // [T, Hq, D], row stride q_stride
  int64_t q_stride = 0;
  KvCacheRef cache;                       // [blocks, block_size, Hkv, D] x 2
  const KvTensorMaps* maps = nullptr;     // host copy, from encode_kv_tensor_maps(cache)
  const int32_t* block_tables = nullptr;  // device [S, max_blocks]
  int max_blocks = 0;
  int group = 1;                 // G
  float scale_log2 = 0.0f;       // softmax scale * log2(e)
  __nv_bfloat16* out = nullptr;  // [T, Hq, D], row stride out_stride
  int64_t out_stride = 0;
  float* rec_m = nullptr;    // split states [records]
  float* rec_l = nullptr;    // [records]
  float* rec_acc = nullptr;  // [records, D]
  WgmmaPipeline pipeline = WgmmaPipeline::pingpong;
};

// Raises the kernels' dynamic shared-memory limit; call once per device before launching.
Status attention_wgmma_setup();

// Launches one CTA per item (items of up to kAttnRowsPerCtaWide rows; split items of up to
// kAttnRowsPerCta). No allocation, no synchronisation: graph-capturable.
Status attention_wgmma(const AttentionWgmmaArgs& args, cudaStream_t stream);

}  // namespace invar::kernels::cuda::sm90
