#include "engine/fingerprint.h"

#include <fmt/format.h>

#include <cstring>

#include "invar_build_id.h"  // generated at build time (cmake/build_id.cmake)

namespace invar::engine {

static uint64_t mix(uint64_t h, const model::HostBytes& bytes) {
  // Word-wise multiply-xor; fast enough for a few GB at start-up.
  const size_t words = bytes.size() / 8;
  for (size_t i = 0; i < words; ++i) {
    uint64_t w;
    std::memcpy(&w, bytes.data() + i * 8, 8);
    h = (h ^ w) * 0x100000001b3ull;
    h ^= h >> 29;
  }
  for (size_t i = words * 8; i < bytes.size(); ++i) h = (h ^ bytes.data()[i]) * 0x100000001b3ull;
  return (h ^ bytes.size()) * 0x9e3779b97f4a7c15ull;
}

uint64_t weights_hash(const model::ModelWeights& w) {
  uint64_t h = 0xcbf29ce484222325ull;
  h = mix(h, w.embedding.bytes);
  h = mix(h, w.final_norm.bytes);
  h = mix(h, w.lm_head.bytes);
  for (const auto& l : w.layers) {
    for (const auto* t : {&l.attn_norm, &l.wq, &l.wk, &l.wv, &l.wo, &l.bq, &l.bk, &l.bv,
                          &l.q_norm, &l.k_norm, &l.ffn_norm, &l.w_gate, &l.w_up, &l.w_down})
      h = mix(h, t->bytes);
    if (l.router.empty()) continue;  // dense layer: its hash is what it was before experts
    h = mix(h, l.router.bytes);
    for (const auto& e : l.experts)
      for (const auto* t : {&e.w_gate, &e.w_up, &e.w_down}) h = mix(h, t->bytes);
    if (l.shared_gate.empty()) continue;  // no shared expert: the hash it had before them
    for (const auto* t : {&l.shared.w_gate, &l.shared.w_up, &l.shared.w_down, &l.shared_gate})
      h = mix(h, t->bytes);
  }
  return h;
}

const char* build_id() {
  return INVAR_BUILD_ID;
}

std::string make_fingerprint(const model::ModelWeights& w, const std::string& kernel_mode) {
  return fmt::format("inv-{:016x}-{}-{}", weights_hash(w), INVAR_BUILD_ID, kernel_mode);
}

}  // namespace invar::engine
