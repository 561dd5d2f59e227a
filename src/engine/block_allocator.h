// Hands out KV cache blocks from a free list. (The serving issue extends this into the
// reference-counted block manager with prefix sharing.)
#pragma once

#include <cstdint>
#include <vector>

#include "core/status.h"

namespace invar::engine {

class BlockAllocator {
 public:
  explicit BlockAllocator(int num_blocks);

  int num_free() const { return int(free_.size()); }
  int num_blocks() const { return num_blocks_; }
  // Appends `count` blocks to `table`, or fails leaving it unchanged.
  Status allocate(int count, std::vector<int32_t>& table);
  void release(std::vector<int32_t>& table);

 private:
  int num_blocks_;
  std::vector<int32_t> free_;  // a stack: lowest ids are handed out first
};

}  // namespace invar::engine
