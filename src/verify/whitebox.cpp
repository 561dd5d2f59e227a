// The transformer-level scenarios of the white-box run: forced batch compositions built by hand
// (BatchPlanBuilder), the target's logits compared bitwise with its solo run, and the first
// differing op found with an ActivationTrace. whitebox_engine.cpp has the Engine scenarios.
#include "verify/whitebox.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
#include <random>
#include <set>

#include "core/thread_pool.h"
#include "engine/model_runner_factory.h"
#include "verify/activation_trace.h"
#include "verify/whitebox_engine.h"

namespace invar::verify {

namespace {

using kernels::KernelMode;

constexpr int kBlockSize = 16;
constexpr int kShortSpan = 16;  // a short other sequence lives in one block
constexpr int kLongSpan = 64;   // a long prefill of another sequence: up to 64 tokens
constexpr int kLongOthers = 4;
constexpr size_t kExamples = 3;  // mismatches kept per scenario

constexpr const char* kDefaultPrompt =
    "The old lighthouse keeper climbed the spiral stairs every evening at dusk, counting the one "
    "hundred and twelve steps as his father had taught him. At the top he trimmed the wick, "
    "polished the great lens, and watched the fishing boats race home ahead of the storm.";

const std::vector<std::string> kTransformerScenarios{"chunked", "chunked-loaded", "batch-decode",
                                                     "batch-mixed"};
const std::vector<std::string> kEngineScenarios{"engine-load", "engine-preempt", "engine-prefix",
                                                "engine-seeded"};

std::string describe(const std::string& scenario) {
  if (scenario == "chunked") return "the target cut into prefill chunks, alone";
  if (scenario == "chunked-loaded") return "prefill chunks, each step shared with other sequences";
  if (scenario == "batch-decode") return "one decode step among B-1 other decodes";
  if (scenario == "batch-mixed") return "prefill among B-1 random decodes, chunks and prefills";
  if (scenario == "engine-load") return "Engine: among random requests, chunked prefill";
  if (scenario == "engine-preempt") return "Engine: small KV cache, preemption and recompute";
  if (scenario == "engine-prefix") return "Engine: prefix cache hot (shared) and off";
  if (scenario == "engine-seeded") return "Engine: temperature 0.8 with a seed, under load";
  return {};
}

// One sequence's share of a step: tokens at positions start..start+count-1.
struct Part {
  int seq = -1;  // -1: the target; else an other sequence (kLongOthers longs after the shorts)
  int start = 0;
  int count = 0;
  std::vector<int32_t> tokens;  // other sequences only (random)
};

struct Case {
  std::string name;
  bool fresh = true;  // the target starts at position 0 in a scratch table; else it continues
                      // the solo run's KV history
  std::vector<std::vector<Part>> steps;
};

struct Scenario {
  std::string name;
  std::vector<Case> cases;
};

// The matrix: built once from the seed, so every kernel mode runs the same cases.
class MatrixBuilder {
 public:
  MatrixBuilder(const WhiteBoxOptions& o, int prompt_len, int positions, int vocab, int shorts)
      : o_(o), p_(prompt_len), n_(positions), vocab_(vocab), shorts_(shorts), rng_(o.seed) {}

  Scenario build(const std::string& name) {
    Scenario s{name, {}};
    if (name == "chunked" || name == "chunked-loaded") {
      const bool loaded = name == "chunked-loaded";
      for (int c : o_.chunk_sizes) {
        const int chunk = c <= 0 ? n_ : std::min(c, n_);
        Case k{c <= 0 ? fmt::format("chunks of all {} tokens", n_) : fmt::format("chunks of {}", c),
               true,
               {}};
        for (int start = 0; start < n_; start += chunk) {
          std::vector<Part> step{Part{-1, start, std::min(chunk, n_ - start), {}}};
          if (loaded) add_others(step, o_.loaded_others, /*decode_only=*/false);
          k.steps.push_back(std::move(step));
        }
        if (loaded) k.name += fmt::format(", {} others per step", o_.loaded_others);
        s.cases.push_back(std::move(k));
      }
    } else if (name == "batch-decode") {
      for (int b : o_.batch_sizes) {
        const int pos = n_ > p_ ? p_ + pick(0, n_ - p_ - 1) : pick(1, n_ - 1);
        std::vector<Part> step{Part{-1, pos, 1, {}}};
        const size_t slot = add_others(step, b - 1, /*decode_only=*/true);
        s.cases.push_back({fmt::format("batch {}, slot {}, decode at position {}", b, slot, pos),
                           false,
                           {std::move(step)}});
      }
    } else if (name == "batch-mixed") {
      for (int b : o_.batch_sizes) {
        const bool fresh = n_ < 2 || rng_() % 2 == 0;
        const int start = fresh ? 0 : pick(1, n_ - 1);
        std::vector<Part> step{Part{-1, start, n_ - start, {}}};
        const size_t slot = add_others(step, b - 1, /*decode_only=*/false);
        s.cases.push_back(
            {fresh ? fmt::format("batch {}, slot {}, prefill of {} tokens", b, slot, n_)
                   : fmt::format("batch {}, slot {}, positions {}..{} after a cached history", b,
                                 slot, start, n_ - 1),
             fresh,
             {std::move(step)}});
      }
    }
    return s;
  }

 private:
  int pick(int lo, int hi) {
    return std::uniform_int_distribution<int>(lo, std::max(lo, hi))(rng_);
  }

  std::vector<int32_t> random_tokens(int n) {
    std::vector<int32_t> t(static_cast<size_t>(n));
    for (auto& x : t) x = pick(0, vocab_ - 1);
    return t;
  }

  // Adds `count` other sequences around the target (which is step[0]); returns the target's slot.
  size_t add_others(std::vector<Part>& step, int count, bool decode_only) {
    int next_short = 0, next_long = 0;
    for (int i = 0; i < count; ++i) {
      Part p;
      const int kind = decode_only ? 0 : pick(0, 9);
      if (kind == 9 && next_long < kLongOthers) {  // a long prefill
        p.seq = shorts_ + next_long++;
        p.start = 0;
        p.count = pick(kShortSpan + 1, kLongSpan);
      } else if (kind < 5) {  // a decode after a history of 1..15 tokens
        p.seq = next_short++;
        p.start = pick(1, kShortSpan - 1);
        p.count = 1;
      } else {  // a chunk, possibly after a history
        p.seq = next_short++;
        p.start = pick(0, kShortSpan - 4);
        p.count = pick(1, kShortSpan - p.start);
      }
      p.tokens = random_tokens(p.count);
      step.push_back(std::move(p));
    }
    // The target goes to a random slot; the others keep their order.
    const size_t slot = size_t(pick(0, int(step.size()) - 1));
    std::rotate(step.begin(), step.begin() + 1, step.begin() + long(slot) + 1);
    return slot;
  }

  const WhiteBoxOptions& o_;
  int p_, n_, vocab_, shorts_;
  std::mt19937_64 rng_;
};

// Runs the target's cases for one kernel mode against its solo run.
class Harness {
 public:
  // KV blocks of the cache: the target's solo, scratch and backup tables, the others' tables.
  static int kv_blocks(int positions, int shorts) {
    const int target_blocks = (positions + kBlockSize - 1) / kBlockSize;
    return 3 * target_blocks + shorts + kLongOthers * (kLongSpan / kBlockSize);
  }

  // `runner` has kv_blocks(...) blocks of kBlockSize tokens.
  Harness(const model::LoadedModel& m, std::unique_ptr<model::ModelRunner> runner,
          const WhiteBoxOptions& o, std::vector<int32_t> prompt, int shorts)
      : config_(m.config),
        runner_(std::move(runner)),
        tokens_(std::move(prompt)),
        prompt_len_(int(tokens_.size())),
        positions_(prompt_len_ + std::max(0, o.decode_tokens)),
        target_blocks_((positions_ + kBlockSize - 1) / kBlockSize),
        max_blocks_(std::max(target_blocks_, kLongSpan / kBlockSize)),
        reference_(config_.num_layers, positions_),
        trace_(config_.num_layers, positions_) {
    int next = 0;
    for (int b = 0; b < target_blocks_; ++b) solo_table_.push_back(next++);
    // The scratch table holds other physical blocks, in reverse order: block ids must not matter.
    for (int b = 0; b < target_blocks_; ++b)
      scratch_table_.push_back(next + target_blocks_ - 1 - b);
    next += target_blocks_;
    for (int b = 0; b < target_blocks_; ++b) backup_table_.push_back(next++);
    for (int s = 0; s < shorts; ++s) other_tables_.push_back({next++});
    for (int s = 0; s < kLongOthers; ++s) {
      std::vector<int32_t> t;
      for (int b = 0; b < kLongSpan / kBlockSize; ++b) t.push_back(next++);
      other_tables_.push_back(std::move(t));
    }
    if (!o.inject.empty()) {
      reference_.set_injection(&o.inject);
      trace_.set_injection(&o.inject);
      injecting_ = true;
    }
  }

  int positions() const { return positions_; }
  // FNV-1a over the solo run's tokens and logits bits.
  uint64_t solo_digest() const {
    uint64_t h = 1469598103934665603ull;
    auto mix = [&](const void* p, size_t n) {
      const auto* b = static_cast<const unsigned char*>(p);
      for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 1099511628211ull;
    };
    mix(tokens_.data(), tokens_.size() * sizeof(int32_t));
    mix(ref_logits_.data(), ref_logits_.size() * sizeof(float));
    return h;
  }
  const std::vector<int32_t>& tokens() const { return tokens_; }

  // The solo run: the prompt in one step, then greedy decoding one token per step.
  Status run_reference() {
    runner_->set_probe(&reference_);
    const int vocab = config_.vocab_size;
    ref_logits_.assign(size_t(positions_) * size_t(vocab), 0.0f);
    std::vector<float> rows;
    for (int start = 0; start < positions_;) {
      const int count = start == 0 ? prompt_len_ : 1;
      INVAR_RETURN_IF_ERROR(forward({Part{-1, start, count, {}}}, solo_table_, rows, nullptr));
      std::copy(rows.begin(), rows.end(), ref_logits_.begin() + long(start) * vocab);
      start += count;
      if (int(tokens_.size()) < positions_) {
        const float* last = rows.data() + size_t(count - 1) * size_t(vocab);
        tokens_.push_back(
            int32_t(std::max_element(last, last + vocab) - last));  // lowest id on ties
      }
    }
    // Cases run without a probe (on CUDA a probe costs a sync and a copy per op); a mismatching
    // case runs again with the trace on to find its first differing op. An injected fault lives
    // in the probe, so with one the trace stays on.
    runner_->set_probe(injecting_ ? &trace_ : nullptr);
    // Keep the solo run's KV history: cases that continue it restore it afterwards.
    for (size_t i = 0; i < solo_table_.size(); ++i)
      INVAR_RETURN_IF_ERROR(runner_->copy_kv_block(solo_table_[i], backup_table_[i]));
    return Status();
  }

  // Runs one case; a mismatch says where the logits first differ and, when `localize`, which
  // op differs first.
  Result<std::optional<WhiteBoxMismatch>> run_case(const Case& c, bool localize) {
    trace_.clear();
    std::set<int> differing;
    INVAR_RETURN_IF_ERROR(run_steps(c, differing));
    if (differing.empty()) return std::optional<WhiteBoxMismatch>();
    WhiteBoxMismatch m;
    m.case_name = c.name;
    m.first_position = *differing.begin();
    m.positions_differing = int(differing.size());
    if (localize && !injecting_) {  // again, traced: the same steps give the same bits
      trace_.clear();
      runner_->set_probe(&trace_);
      std::set<int> again;
      Status st = run_steps(c, again);
      runner_->set_probe(nullptr);
      INVAR_RETURN_IF_ERROR(st);
    }
    if (localize) m.where = trace_.compare_with(reference_);
    return std::optional<WhiteBoxMismatch>(std::move(m));
  }

 private:
  // The case's steps; `differing` gets the target positions whose logits differ from the solo
  // run's. Continuing cases leave the solo run's KV history as they found it.
  Status run_steps(const Case& c, std::set<int>& differing) {
    const size_t vocab = size_t(config_.vocab_size);
    std::vector<float> rows;
    for (const auto& step : c.steps) {
      const Part* target = nullptr;
      Status st = forward(step, c.fresh ? scratch_table_ : solo_table_, rows, &target);
      if (!st.ok()) {
        if (!c.fresh) INVAR_RETURN_IF_ERROR(restore_solo_kv());
        return st;
      }
      for (int i = 0; i < target->count; ++i) {
        const int pos = target->start + i;
        if (std::memcmp(rows.data() + size_t(i) * vocab, ref_logits_.data() + size_t(pos) * vocab,
                        vocab * sizeof(float)) != 0)
          differing.insert(pos);
      }
    }
    if (!c.fresh) INVAR_RETURN_IF_ERROR(restore_solo_kv());
    return Status();
  }

  // One forward step over `parts`; returns the target's logits rows ([count, V]).
  Status forward(const std::vector<Part>& parts, const std::vector<int32_t>& target_table,
                 std::vector<float>& rows, const Part** target_out) {
    model::BatchPlanBuilder builder(kBlockSize, max_blocks_);
    int target_index = -1;
    size_t logit_offset = 0;
    for (size_t i = 0; i < parts.size(); ++i) {
      const Part& p = parts[i];
      if (p.seq < 0) {
        target_index = int(i);
        builder.add_sequence(
            std::span<const int32_t>(tokens_).subspan(size_t(p.start), size_t(p.count)), p.start,
            target_table, model::LogitRows::all);
        if (target_out) *target_out = &p;
      } else {
        if (target_index < 0 && p.count > 0) ++logit_offset;
        builder.add_sequence(p.tokens, p.start, other_tables_[size_t(p.seq)],
                             model::LogitRows::last);
      }
    }
    const model::BatchPlan plan = builder.build();
    reference_.set_target(target_index);
    trace_.set_target(target_index);
    INVAR_RETURN_IF_ERROR(runner_->forward(plan, logits_));
    const size_t vocab = size_t(config_.vocab_size);
    const int count = parts[size_t(target_index)].count;
    rows.assign(logits_.begin() + long(logit_offset * vocab),
                logits_.begin() + long((logit_offset + size_t(count)) * vocab));
    return Status();
  }

  Status restore_solo_kv() {
    for (size_t i = 0; i < solo_table_.size(); ++i)
      INVAR_RETURN_IF_ERROR(runner_->copy_kv_block(backup_table_[i], solo_table_[i]));
    return Status();
  }

  const model::ModelConfig& config_;
  std::unique_ptr<model::ModelRunner> runner_;
  std::vector<int32_t> tokens_;
  int prompt_len_, positions_, target_blocks_, max_blocks_;
  ActivationTrace reference_, trace_;
  std::vector<int32_t> solo_table_, scratch_table_, backup_table_;
  std::vector<std::vector<int32_t>> other_tables_;
  std::vector<float> ref_logits_, logits_;
  bool injecting_ = false;
};

bool wanted(const WhiteBoxOptions& o, const std::string& name) {
  return o.scenarios.empty() ||
         std::find(o.scenarios.begin(), o.scenarios.end(), name) != o.scenarios.end();
}

}  // namespace

WhiteBoxOptions WhiteBoxOptions::quick() {
  WhiteBoxOptions o;
  o.batch_sizes = default_batch_sizes(true);
  o.decode_tokens = 4;
  o.engine_max_tokens = 12;
  o.engine_copies = 2;
  o.engine_background = 8;
  return o;
}

std::vector<int> default_batch_sizes(bool quick) {
  if (quick) return {1, 2, 3, 5, 7, 8, 9, 13, 16, 17, 31, 64};
  std::vector<int> sizes;
  for (int b = 1; b <= 16; ++b) sizes.push_back(b);
  for (int b : {17, 19, 23, 29, 31, 32, 37, 53, 61, 64, 67, 97, 127, 128, 131, 193, 251, 256})
    sizes.push_back(b);
  return sizes;
}

std::vector<std::string> whitebox_scenario_names() {
  std::vector<std::string> all = kTransformerScenarios;
  all.insert(all.end(), kEngineScenarios.begin(), kEngineScenarios.end());
  return all;
}

namespace {

// `bundle` is null for a model without a tokenizer.
WhiteBoxReport run(const model::LoadedModel& m, const engine::ModelBundle* bundle,
                   const WhiteBoxOptions& options) {
  WhiteBoxOptions o = options;
  if (o.batch_sizes.empty()) o.batch_sizes = default_batch_sizes(false);
  std::erase_if(o.batch_sizes, [](int b) { return b < 1; });
  const auto& config = m.config;
  WhiteBoxReport report;
  report.model = m.source;
  report.num_layers = config.num_layers;
  report.injection = o.inject.spec;
  for (const auto& s : o.scenarios)
    if (describe(s).empty()) {
      report.error = "unknown white-box scenario " + s + "; one of chunked, chunked-loaded, " +
                     "batch-decode, batch-mixed, engine-load, engine-preempt, engine-prefix, " +
                     "engine-seeded";
      return report;
    }

  std::vector<int32_t> prompt;
  if (bundle) {
    const std::string text = o.prompt.empty() ? kDefaultPrompt : o.prompt;
    prompt = bundle->tokenizer.encode(text, bundle->tokenizer.add_bos_default(), false);
  } else {
    std::mt19937_64 rng(o.seed);
    for (int i = 0; i < o.random_prompt_tokens; ++i)
      prompt.push_back(int32_t(rng() % uint64_t(config.vocab_size)));
    report.notes.push_back(
        fmt::format("no tokenizer: the target is {} random token ids", prompt.size()));
  }
  if (prompt.empty()) {
    report.error = "the target prompt has no tokens";
    return report;
  }
  const int positions = int(prompt.size()) + std::max(0, o.decode_tokens);
  if (config.max_position > 0 && positions > config.max_position) {
    report.error = fmt::format("the target ({} tokens) exceeds the model's context ({})", positions,
                               config.max_position);
    return report;
  }
  report.prompt_tokens = int(prompt.size());
  report.target_tokens = positions;

  const int max_batch = *std::max_element(o.batch_sizes.begin(), o.batch_sizes.end());
  const int shorts = std::max({max_batch - 1, o.loaded_others, 1});
  std::vector<Scenario> matrix;
  {
    MatrixBuilder builder(o, int(prompt.size()), positions, config.vocab_size, shorts);
    for (const auto& name : kTransformerScenarios)
      if (wanted(o, name)) matrix.push_back(builder.build(name));
  }
  std::vector<std::string> engine_scenarios;
  for (const auto& name : kEngineScenarios)
    if (wanted(o, name)) engine_scenarios.push_back(name);
  if (!bundle && !engine_scenarios.empty()) {
    report.notes.push_back("Engine scenarios skipped: the Engine needs the model's tokenizer");
    engine_scenarios.clear();
  }

  report.device = model::device_name(o.device);
  report.threads = o.device == model::Device::cpu ? ThreadPool::size_for(o.threads) : 0;
  for (KernelMode mode : o.modes) {
    const auto t0 = std::chrono::steady_clock::now();
    WhiteBoxMode mr;
    mr.mode = kernels::kernel_mode_name(mode);
    mr.control = mode == KernelMode::fast;
    int total = 0, done = 0;
    for (const auto& s : matrix) total += int(s.cases.size());
    for (const auto& name : engine_scenarios) total += engine_scenario_cases(name, o);
    auto tick = [&](const std::string& scenario) {
      ++done;
      if (o.progress) o.progress(mr.mode + "/" + scenario, done, total);
    };

    if (!matrix.empty()) {
      model::RunnerOptions ro;
      ro.device = o.device;
      ro.kernels = mode;
      ro.threads = o.threads;
      ro.tensor_parallel_size = o.tensor_parallel_size;
      ro.tp_slices = o.tp_slices;
      ro.block_size = kBlockSize;
      ro.kv_blocks = Harness::kv_blocks(positions, shorts);
      auto runner = engine::make_model_runner(m.config, m.weights, ro);
      if (!runner.ok()) {
        report.error = "the model did not start: " + runner.status().message();
        report.modes.push_back(std::move(mr));
        return report;
      }
      Harness harness(m, std::move(runner).value(), o, prompt, shorts);
      Status st = harness.run_reference();
      if (!st.ok()) {
        report.error = "solo run: " + st.message();
        report.modes.push_back(std::move(mr));
        return report;
      }
      mr.solo_digest = fmt::format("{:016x}", harness.solo_digest());
      for (const auto& s : matrix) {
        WhiteBoxScenario sr;
        sr.name = s.name;
        sr.description = describe(s.name);
        for (const auto& c : s.cases) {
          auto r = harness.run_case(c, sr.mismatches.size() < kExamples);
          tick(s.name);
          if (!r.ok()) {
            sr.error = c.name + ": " + r.status().message();
            break;
          }
          ++sr.cases;
          if (!r->has_value()) continue;
          ++sr.mismatched;
          if (sr.mismatches.size() < kExamples) sr.mismatches.push_back(std::move(**r));
        }
        mr.scenarios.push_back(std::move(sr));
      }
    }
    for (const auto& name : engine_scenarios) {
      WhiteBoxScenario sr =
          run_engine_scenario(name, *bundle, mode, o, prompt, [&] { tick(name); });
      sr.description = describe(name);
      mr.scenarios.push_back(std::move(sr));
    }
    mr.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    report.modes.push_back(std::move(mr));
  }
  return report;
}

}  // namespace

WhiteBoxReport run_whitebox(const engine::ModelBundle& bundle, const WhiteBoxOptions& options) {
  return run(bundle.model, &bundle, options);
}

WhiteBoxReport run_whitebox(const model::LoadedModel& model, const WhiteBoxOptions& options) {
  return run(model, nullptr, options);
}

}  // namespace invar::verify
