#include "verify/activation_trace.h"

#include <cmath>
#include <cstring>

namespace invar::verify {

namespace {

using model::ProbeOp;

constexpr uint32_t bit(ProbeOp op) {
  return 1u << int(op);
}
constexpr uint32_t kNormOps =
    bit(ProbeOp::attn_norm) | bit(ProbeOp::ffn_norm) | bit(ProbeOp::q_norm) | bit(ProbeOp::k_norm) |
    bit(ProbeOp::post_attn_norm) | bit(ProbeOp::post_ffn_norm) | bit(ProbeOp::final_norm);
constexpr uint32_t kGemmOps = bit(ProbeOp::q_proj) | bit(ProbeOp::k_proj) | bit(ProbeOp::v_proj) |
                              bit(ProbeOp::o_proj) | bit(ProbeOp::gate_proj) |
                              bit(ProbeOp::up_proj) | bit(ProbeOp::down_proj) |
                              bit(ProbeOp::router) | bit(ProbeOp::experts) | bit(ProbeOp::logits);

// 64-bit hash of a row's bits: FNV-1a over 32-bit words, then a final mix.
uint64_t hash_row(const float* row, int64_t width) {
  uint64_t h = 1469598103934665603ull;
  for (int64_t i = 0; i < width; ++i) {
    uint32_t w;
    std::memcpy(&w, row + i, sizeof w);
    h = (h ^ w) * 1099511628211ull;
  }
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  return h;
}

uint64_t combine(uint64_t seed, uint64_t h) {
  return seed ^ (h + 0x9e3779b97f4a7c15ull + (seed << 6) + (seed >> 2));
}

}  // namespace

Result<Injection> parse_injection(const std::string& spec) {
  Injection inj;
  inj.spec = spec;
  std::string name = spec;
  if (auto at = spec.find('@'); at != std::string::npos) {
    name = spec.substr(0, at);
    const std::string layer = spec.substr(at + 1);
    char* end = nullptr;
    long v = std::strtol(layer.c_str(), &end, 10);
    if (layer.empty() || *end != '\0' || v < -1)
      return Status::error(StatusCode::invalid_argument,
                           "--inject " + spec + ": the layer after '@' must be a number >= 0");
    inj.layer = int(v);
  }
  if (name == "rmsnorm") {
    inj.ops = kNormOps;
  } else if (name == "gemm") {
    inj.ops = kGemmOps;
  } else {
    for (int i = 0; i < model::kProbeOpCount; ++i)
      if (name == model::probe_op_name(ProbeOp(i))) inj.ops = 1u << i;
  }
  if (inj.ops == 0)
    return Status::error(StatusCode::invalid_argument,
                         "--inject " + spec + ": unknown op; one of " + injection_names());
  return inj;
}

std::string injection_names() {
  std::string s = "rmsnorm, gemm";
  for (int i = 0; i < model::kProbeOpCount; ++i)
    s += std::string(", ") + model::probe_op_name(ProbeOp(i));
  return s;
}

ActivationTrace::ActivationTrace(int num_layers, int positions)
    : num_layers_(num_layers), positions_(positions) {
  const size_t n = size_t(num_layers + 2) * model::kProbeOpCount * size_t(positions);
  hash_.assign(n, 0);
  recorded_.assign(n, 0);
}

void ActivationTrace::clear() {
  std::fill(hash_.begin(), hash_.end(), 0);
  std::fill(recorded_.begin(), recorded_.end(), 0);
}

void ActivationTrace::begin_step(const model::BatchPlan& plan) {
  token_rows_.clear();
  logit_rows_.clear();
  if (target_ < 0 || target_ >= plan.num_seqs()) return;
  const int32_t begin = plan.q_indptr[size_t(target_)], end = plan.q_indptr[size_t(target_) + 1];
  for (int32_t t = begin; t < end; ++t) {
    const int pos = plan.positions[size_t(t)];
    if (pos < positions_) token_rows_.push_back({t, pos});
  }
  for (size_t r = 0; r < plan.logit_rows.size(); ++r) {
    const int32_t t = plan.logit_rows[r];
    const int pos = plan.positions[size_t(t)];
    if (t >= begin && t < end && pos < positions_) logit_rows_.push_back({int64_t(r), pos});
  }
}

void ActivationTrace::after_op(int layer, ProbeOp op, float* data, int64_t rows, int64_t width) {
  if (injection_ && injection_->applies(layer, op)) {
    // Depends on how many rows share the step: the fault a batch-dependent kernel would make.
    const float scale = 1.0f + std::ldexp(float(rows), -22);
    for (int64_t i = 0; i < rows * width; ++i) data[i] *= scale;
  }
  const bool logit_space = op == ProbeOp::final_norm || op == ProbeOp::logits;
  for (auto [row, pos] : logit_space ? logit_rows_ : token_rows_) {
    const size_t i = index(layer, op, pos);
    hash_[i] = hash_row(data + row * width, width);
    recorded_[i] = 1;
  }
}

Localization ActivationTrace::compare_with(const ActivationTrace& reference) const {
  Localization loc;
  for (int layer = -1; layer <= num_layers_; ++layer) {
    for (int o = 0; o < model::kProbeOpCount; ++o) {
      const auto op = ProbeOp(o);
      OpHash entry{layer, op, 0, 0};
      bool any = false;
      for (int pos = 0; pos < positions_; ++pos) {
        const size_t i = index(layer, op, pos);
        if (!recorded_[i]) continue;
        any = true;
        const uint64_t expected = reference.recorded_[i] ? reference.hash_[i] : 0;
        entry.expected = combine(entry.expected, expected);
        entry.actual = combine(entry.actual, hash_[i]);
        if (!loc.found && expected != hash_[i]) {
          loc.found = true;
          loc.layer = layer;
          loc.op = op;
          loc.position = pos;
        }
      }
      if (any) loc.ops.push_back(entry);
    }
  }
  return loc;
}

}  // namespace invar::verify
