#include "engine/block_manager.h"

namespace invar::engine {

BlockManager::BlockManager(int num_blocks, int block_size, bool prefix_cache)
    : block_size_(block_size), prefix_cache_(prefix_cache), blocks_(size_t(num_blocks)) {
  free_.reserve(size_t(num_blocks));
  for (int b = num_blocks - 1; b >= 0; --b) free_.push_back(b);
}

uint64_t BlockManager::chain_hash(uint64_t parent, std::span<const int32_t> block_tokens) const {
  // splitmix64-style mixing of the parent hash and each token.
  uint64_t h = parent ^ 0x9e3779b97f4a7c15ull;
  for (int32_t t : block_tokens) {
    h ^= uint64_t(uint32_t(t)) + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ull;
    h = (h ^ (h >> 27)) * 0x94d049bb133111ebull;
    h ^= h >> 31;
  }
  return h == 0 ? 1 : h;  // 0 marks "no parent"
}

int BlockManager::match_prefix(std::span<const int32_t> tokens, int max_tokens,
                               std::vector<int32_t>& table) {
  if (!prefix_cache_) return 0;
  int covered = 0;
  uint64_t parent = 0;
  while (covered + block_size_ <= std::min<int>(max_tokens, int(tokens.size()))) {
    auto block_tokens = tokens.subspan(size_t(covered), size_t(block_size_));
    uint64_t h = chain_hash(parent, block_tokens);
    auto it = by_hash_.find(h);
    if (it == by_hash_.end()) break;
    Block& b = blocks_[size_t(it->second)];
    if (b.parent != parent || !std::equal(b.tokens.begin(), b.tokens.end(), block_tokens.begin()))
      break;  // a collision: treat as a miss
    if (b.refs == 0) {
      lru_.erase(b.lru_pos);
      ++used_;
    }
    ++b.refs;
    table.push_back(it->second);
    covered += block_size_;
    parent = h;
  }
  return covered;
}

void BlockManager::unregister(int32_t id) {
  Block& b = blocks_[size_t(id)];
  if (!b.registered) return;
  auto it = by_hash_.find(b.hash);
  if (it != by_hash_.end() && it->second == id) by_hash_.erase(it);
  b.registered = false;
  b.tokens.clear();
}

Status BlockManager::allocate(int count, std::vector<int32_t>& table) {
  if (count > num_available())
    return Status::error(StatusCode::resource_exhausted,
                         fmt::format("KV cache full: need {} blocks, {} available of {}", count,
                                     num_available(), num_blocks()));
  for (int i = 0; i < count; ++i) {
    int32_t id;
    if (!free_.empty()) {
      id = free_.back();
      free_.pop_back();
    } else {  // evict the least recently used cached block
      id = lru_.front();
      lru_.pop_front();
      unregister(id);
    }
    blocks_[size_t(id)].refs = 1;
    ++used_;
    table.push_back(id);
  }
  return Status();
}

void BlockManager::release(std::vector<int32_t>& table) {
  // Release in reverse so a sequence's deepest blocks are evicted before its first ones.
  for (auto it = table.rbegin(); it != table.rend(); ++it) {
    Block& b = blocks_[size_t(*it)];
    if (--b.refs > 0) continue;
    --used_;
    if (b.registered) {
      b.lru_pos = lru_.insert(lru_.end(), *it);
    } else {
      free_.push_back(*it);
    }
  }
  table.clear();
}

void BlockManager::register_prefix(std::span<const int32_t> tokens, int computed,
                                   const std::vector<int32_t>& table) {
  if (!prefix_cache_) return;
  uint64_t parent = 0;
  const int full = std::min<int>(computed / block_size_, int(table.size()));
  for (int i = 0; i < full; ++i) {
    auto block_tokens = tokens.subspan(size_t(i) * block_size_, size_t(block_size_));
    Block& b = blocks_[size_t(table[size_t(i)])];
    if (b.registered) {  // already known (shared or registered earlier)
      parent = b.hash;
      continue;
    }
    uint64_t h = chain_hash(parent, block_tokens);
    if (by_hash_.count(h) == 0) {  // another block may already hold this prefix: keep that one
      b.registered = true;
      b.hash = h;
      b.parent = parent;
      b.tokens.assign(block_tokens.begin(), block_tokens.end());
      by_hash_[h] = table[size_t(i)];
    }
    parent = h;
  }
}

}  // namespace invar::engine
