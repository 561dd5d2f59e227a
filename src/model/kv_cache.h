// Paged KV cache storage: for every layer, K and V blocks of [block_size, Hkv, D] f32 or f16.
// Which block belongs to which sequence is decided by the engine's block manager; the model
// only reads the page tables it is handed. The storage comes zero-filled from the OS, page by
// page as it is written, so a cache sized for the longest context costs what is used.
#pragma once

#include <cstdint>
#include <vector>

#include "core/page_buffer.h"
#include "core/status.h"
#include "kernels/types.h"
#include "model/config.h"

namespace invar::model {

class KvCache {
 public:
  // dtype: f32 or f16.
  KvCache(const ModelConfig& config, int num_blocks, int block_size, DType dtype);

  int num_blocks() const { return num_blocks_; }
  int block_size() const { return block_size_; }
  DType dtype() const { return dtype_; }
  kernels::KvLayerRef layer(int i);
  // Bytes of one block of one layer's K (or V).
  size_t block_bytes() const { return block_bytes_; }
  // Copies block src over block dst in every layer's K and V.
  Status copy_block(int32_t src, int32_t dst);

 private:
  int num_layers_, num_blocks_, block_size_, kv_heads_, head_dim_;
  DType dtype_;
  size_t block_bytes_;
  PageBuffer k_, v_;  // [layers, num_blocks, block_size, Hkv, D] each
};

}  // namespace invar::model
