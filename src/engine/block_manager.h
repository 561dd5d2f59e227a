// KV cache blocks with reference counts and a prefix cache.
//
// A full block is identified by a hash chained over every token from position 0 to its end,
// so equal hashes mean equal prefixes; the tokens are kept too and compared on a match, so a
// hash collision can never hand out the wrong KV. A block whose last reference is dropped
// keeps its content and sits in an LRU list until a fresh allocation needs it. Shared
// blocks are only ever read: a sequence writes only to blocks past its matched prefix.
#pragma once

#include <cstdint>
#include <list>
#include <span>
#include <unordered_map>
#include <vector>

#include "core/status.h"

namespace invar::engine {

class BlockManager {
 public:
  BlockManager(int num_blocks, int block_size, bool prefix_cache);

  int block_size() const { return block_size_; }
  int num_blocks() const { return int(blocks_.size()); }
  int num_used() const { return used_; }           // referenced by a sequence
  int num_cached() const { return int(lru_.size()); }  // unreferenced, content reusable
  int num_available() const { return int(free_.size() + lru_.size()); }

  // Appends to `table` the cached blocks of the longest run of full blocks that prefixes
  // `tokens` and covers at most `max_tokens` tokens; returns the tokens covered. `table` must
  // be empty.
  int match_prefix(std::span<const int32_t> tokens, int max_tokens, std::vector<int32_t>& table);

  // Appends `count` fresh blocks to `table` (evicting cached ones, least recently used
  // first), or fails with resource_exhausted leaving everything unchanged.
  Status allocate(int count, std::vector<int32_t>& table);

  // Drops the references of `table` and clears it.
  void release(std::vector<int32_t>& table);

  // Records the content of the table's full blocks covering tokens[0, computed) so later
  // requests can share them. Call after those tokens' KV has been written.
  void register_prefix(std::span<const int32_t> tokens, int computed,
                       const std::vector<int32_t>& table);

 private:
  struct Block {
    int refs = 0;
    uint64_t hash = 0;  // valid when registered
    bool registered = false;
    std::vector<int32_t> tokens;  // content of a registered block
    uint64_t parent = 0;          // hash of the previous block (0 for the first)
    std::list<int32_t>::iterator lru_pos;
  };
  uint64_t chain_hash(uint64_t parent, std::span<const int32_t> block_tokens) const;
  void unregister(int32_t id);

  int block_size_;
  bool prefix_cache_;
  int used_ = 0;
  std::vector<Block> blocks_;
  std::vector<int32_t> free_;   // never-registered or evicted blocks (a stack)
  std::list<int32_t> lru_;      // unreferenced registered blocks, oldest first
  std::unordered_map<uint64_t, int32_t> by_hash_;
};

}  // namespace invar::engine
