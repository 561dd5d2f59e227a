// White-box verification: runs a model in-process with forced batch compositions and compares
// a target sequence's logits bitwise with its solo run (docs/invariance.md, the guarantee).
//
// The target is a prompt followed by a few greedily decoded tokens. Its solo run prefills the
// prompt in one step and decodes the rest one token per step, alone; every other run of the
// same tokens must give the same logits at every position:
//   chunked          the sequence cut into chunks of 1, 7, 16, 64 and all tokens, alone
//   chunked-loaded   the same, each step shared with random other sequences
//   batch-decode     one decode step of the target among B-1 other decodes (B = batch size)
//   batch-mixed      the target's prefill (or the rest of it after a cached history) among B-1
//                    random decodes, chunks and long prefills, at a random slot
//   engine-load      the Engine: target requests among random ones, chunked prefill (tokens and
//                    all 20 top logprobs compared)
//   engine-preempt   the same with a KV cache small enough to force preemption and recompute
//   engine-prefix    prefix cache hot (the prefix computed by other requests) and off
//   engine-seeded    temperature 0.8 with a seed, alone and under load
// The same matrix runs in `fast` kernel mode as the negative control (R8): it must find
// differences, or the matrix lacked the power to see a batch-dependent kernel.
// A mismatch in a transformer scenario is localized with an ActivationTrace: the first
// (layer, op) whose output for the target differs from the solo run.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "engine/model_bundle.h"
#include "kernels/types.h"
#include "model/model_runner.h"
#include "verify/report.h"

namespace invar::verify {

struct WhiteBoxOptions {
  model::Device device = model::Device::cpu;
  int threads = 0;  // CPU threads, 0: all cores
  int tensor_parallel_size = 1;  // model::RunnerOptions: ranks as threads
  int tp_slices = -1;            // model::RunnerOptions::tp_slices
  std::vector<kernels::KernelMode> modes{kernels::KernelMode::invariant, kernels::KernelMode::fast};
  std::vector<std::string> scenarios;             // empty: all (whitebox_scenario_names())
  std::vector<int> batch_sizes;                   // empty: default_batch_sizes(false)
  std::vector<int> chunk_sizes{1, 7, 16, 64, 0};  // 0: the whole sequence in one step
  std::string prompt;                             // empty: a built-in paragraph
  int random_prompt_tokens = 64;  // the target's prompt when the model has no tokenizer
  int decode_tokens = 8;          // greedy tokens after the prompt (decoded alone)
  int loaded_others = 3;          // other sequences per step in chunked-loaded
  uint64_t seed = 1234;           // the matrix's random choices
  // Engine scenarios.
  int engine_max_tokens = 24;  // tokens generated per target request
  int engine_copies = 4;       // target requests per loaded engine
  int engine_background = 16;  // random requests beside them
  Injection inject;            // test only: a batch-dependent fault
  // Called after each case: (mode/scenario, cases done, cases in this mode).
  std::function<void(const std::string&, int, int)> progress;

  // Smaller matrix (--quick).
  static WhiteBoxOptions quick();
};

// 1..16, then primes and powers of two up to 256; quick: a dozen of them up to 64.
std::vector<int> default_batch_sizes(bool quick);
std::vector<std::string> whitebox_scenario_names();

// Runs the matrix on options.device for each mode of `options`.
WhiteBoxReport run_whitebox(const engine::ModelBundle& bundle, const WhiteBoxOptions& options);
// A model without a tokenizer (random weights, test checkpoints): the target's prompt is seeded
// random token ids and the Engine scenarios are skipped.
WhiteBoxReport run_whitebox(const model::LoadedModel& model, const WhiteBoxOptions& options);

}  // namespace invar::verify
