// Identifies what determines a response's bits: the weights, the engine build and the
// kernel mode. Equal fingerprints promise equal bits (docs/invariance.md, the guarantee).
#pragma once

#include <cstdint>
#include <string>

#include "model/weights.h"

namespace invar::engine {

// A 64-bit hash of every weight byte, in a fixed order.
uint64_t weights_hash(const model::ModelWeights& w);

// The engine build: "<version>+<commit>[-dirty]", from git at build time.
const char* build_id();

// "inv-<weights hash>-<build>-<kernel mode>"
std::string make_fingerprint(const model::ModelWeights& w, const std::string& kernel_mode);

}  // namespace invar::engine
