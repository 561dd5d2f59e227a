// Paged KV cache storage: for every layer, K and V blocks of [block_size, Hkv, D] f32.
// Which block belongs to which sequence is decided by the engine's block manager; the model
// only reads the page tables it is handed.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/types.h"
#include "model/config.h"

namespace invar::model {

class KvCache {
 public:
  KvCache(const ModelConfig& config, int num_blocks, int block_size);

  int num_blocks() const { return num_blocks_; }
  int block_size() const { return block_size_; }
  kernels::KvLayerRef layer(int i);

 private:
  int num_blocks_, block_size_, kv_heads_, head_dim_;
  std::vector<std::vector<float>> k_, v_;  // per layer
};

}  // namespace invar::model
