#include "model/kv_cache.h"

#include <cassert>
#include <cstring>

namespace invar::model {

KvCache::KvCache(const ModelConfig& config, int num_blocks, int block_size, DType dtype)
    : num_layers_(config.num_layers),
      num_blocks_(num_blocks),
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

Status KvCache::copy_block(int32_t src, int32_t dst) {
  if (src < 0 || dst < 0 || src >= num_blocks_ || dst >= num_blocks_)
    return Status::errorf("copy_kv_block: block {} or {} outside the cache ({} blocks)", src, dst,
                          num_blocks_);
  for (int l = 0; l < num_layers_; ++l) {
    const kernels::KvLayerRef layer = this->layer(l);
    for (void* part : {layer.k, layer.v}) {
      uint8_t* base = static_cast<uint8_t*>(part);
      std::memcpy(base + size_t(dst) * block_bytes_, base + size_t(src) * block_bytes_,
                  block_bytes_);
    }
  }
  return Status();
}

}  // namespace invar::model
