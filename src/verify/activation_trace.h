// The white-box probe of `invar verify`: records, for one target sequence of each step, a hash
// of every op's output row per absolute position, so two runs of the same sequence can be
// compared op by op and the first op whose output differs named. It can also inject a
// deliberately batch-dependent fault into chosen ops (tests prove verify catches it).
//   N = positions of the target sequence, L = layers
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"
#include "model/activation_probe.h"

namespace invar::verify {

// A batch-dependent fault: each listed op's output is scaled by (1 + rows * 2^-22), rows being
// the rows of the step, so the same sequence gets other bits in another batch. Test only.
struct Injection {
  uint32_t ops = 0;  // bit i: model::ProbeOp(i)
  int layer = -2;    // -2: every layer the op runs in; else that layer only
  std::string spec;  // as given: "ffn_norm", "rmsnorm", "down_proj@3"
  bool empty() const { return ops == 0; }
  bool applies(int l, model::ProbeOp op) const {
    return (ops >> int(op) & 1u) && (layer == -2 || layer == l);
  }
};

// "OP[@LAYER]": OP is an op name (embedding, attn_norm, q_proj, ..., logits), or a group:
// rmsnorm (every norm), gemm (every projection and the logits).
Result<Injection> parse_injection(const std::string& spec);
// Every name parse_injection accepts, for help texts.
std::string injection_names();

// One (layer, op) of the forward pass with the hashes of two runs over the compared positions.
struct OpHash {
  int layer = 0;  // -1: embedding; num_layers: final_norm and logits
  model::ProbeOp op = model::ProbeOp::embedding;
  uint64_t expected = 0;  // the solo run
  uint64_t actual = 0;    // the run under test
  bool differs() const { return expected != actual; }
};

struct Localization {
  bool found = false;  // some op differs
  int layer = 0;       // the first differing op, in execution order
  model::ProbeOp op = model::ProbeOp::embedding;
  int position = 0;         // the first position where it differs
  std::vector<OpHash> ops;  // every recorded (layer, op), in execution order
};

class ActivationTrace final : public model::ActivationProbe {
 public:
  ActivationTrace(int num_layers, int positions);

  // The index of the target among the sequences of the following plans (-1: none).
  void set_target(int sequence) { target_ = sequence; }
  void set_injection(const Injection* injection) { injection_ = injection; }
  void clear();

  void begin_step(const model::BatchPlan& plan) override;
  void after_op(int layer, model::ProbeOp op, float* data, int64_t rows, int64_t width) override;

  // Compares this run (the one under test) with `reference` at the positions this run recorded.
  Localization compare_with(const ActivationTrace& reference) const;

 private:
  size_t index(int layer, model::ProbeOp op, int position) const {
    return (size_t(layer + 1) * model::kProbeOpCount + size_t(op)) * size_t(positions_) +
           size_t(position);
  }

  int num_layers_, positions_;
  int target_ = -1;
  const Injection* injection_ = nullptr;
  // This step's target rows: (row in the token space, position), (row in the logit space,
  // position).
  std::vector<std::pair<int64_t, int>> token_rows_, logit_rows_;
  std::vector<uint64_t> hash_;  // [(L + 2) * ops * N]
  std::vector<uint8_t> recorded_;
};

}  // namespace invar::verify
