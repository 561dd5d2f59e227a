#include "engine/block_allocator.h"

namespace invar::engine {

BlockAllocator::BlockAllocator(int num_blocks) : num_blocks_(num_blocks) {
  free_.reserve(num_blocks);
  for (int b = num_blocks - 1; b >= 0; --b) free_.push_back(b);
}

Status BlockAllocator::allocate(int count, std::vector<int32_t>& table) {
  if (count > int(free_.size()))
    return Status::errorf("KV cache full: need {} blocks, {} free of {}", count, free_.size(),
                          num_blocks_);
  for (int i = 0; i < count; ++i) {
    table.push_back(free_.back());
    free_.pop_back();
  }
  return Status();
}

void BlockAllocator::release(std::vector<int32_t>& table) {
  for (auto it = table.rbegin(); it != table.rend(); ++it) free_.push_back(*it);
  table.clear();
}

}  // namespace invar::engine
