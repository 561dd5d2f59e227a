// FNV-1a over the bytes of 64-bit values: a cheap, stable key of a few numbers and addresses
// (CUDA graph keys). Not for weights: engine/fingerprint.cpp hashes those word-wise.
#pragma once

#include <cstdint>
#include <string_view>

namespace invar {

class Fnv1a64 {
 public:
  Fnv1a64& add(uint64_t v) {
    for (int i = 0; i < 8; ++i) h_ = (h_ ^ ((v >> (8 * i)) & 0xffu)) * 0x100000001b3ull;
    return *this;
  }
  Fnv1a64& add(const void* p) { return add(uint64_t(reinterpret_cast<uintptr_t>(p))); }
  Fnv1a64& add_bytes(std::string_view s) {
    for (unsigned char c : s) h_ = (h_ ^ c) * 0x100000001b3ull;
    return *this;
  }
  uint64_t value() const { return h_; }

 private:
  uint64_t h_ = 0xcbf29ce484222325ull;
};

}  // namespace invar
