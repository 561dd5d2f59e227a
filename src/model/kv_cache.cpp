#include "model/kv_cache.h"

#include <cassert>

namespace invar::model {

KvCache::KvCache(const ModelConfig& config, int num_blocks, int block_size, DType dtype)
    : num_blocks_(num_blocks),
      block_size_(block_size),
      kv_heads_(config.num_kv_heads),
      head_dim_(config.head_dim),
      dtype_(dtype),
      block_bytes_(size_t(block_size) * size_t(kv_heads_) * size_t(head_dim_) * dtype_size(dtype)),
      k_(block_bytes_ * size_t(num_blocks) * size_t(config.num_layers)),
      v_(k_.size()) {
  assert(dtype == DType::f32 || dtype == DType::f16);
}

kernels::KvLayerRef KvCache::layer(int i) {
  const size_t off = size_t(i) * size_t(num_blocks_) * block_bytes_;
  return {k_.data() + off, v_.data() + off, num_blocks_, block_size_, kv_heads_, head_dim_, dtype_};
}

}  // namespace invar::model
