#include "model/kv_cache.h"

namespace invar::model {

KvCache::KvCache(const ModelConfig& config, int num_blocks, int block_size)
    : num_blocks_(num_blocks),
      block_size_(block_size),
      kv_heads_(config.num_kv_heads),
      head_dim_(config.head_dim) {
  size_t per_layer = size_t(num_blocks) * block_size * kv_heads_ * head_dim_;
  k_.assign(config.num_layers, std::vector<float>(per_layer));
  v_.assign(config.num_layers, std::vector<float>(per_layer));
}

kernels::KvLayerRef KvCache::layer(int i) {
  return {k_[i].data(), v_[i].data(), num_blocks_, block_size_, kv_heads_, head_dim_};
}

}  // namespace invar::model
