#include "engine/engine.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <random>
#include <thread>
#include <unordered_set>

#include "core/thread_pool.h"
#include "engine/block_manager.h"
#include "engine/draw_path.h"
#include "engine/fingerprint.h"
#include "engine/model_runner_factory.h"
#include "engine/philox.h"
#include "engine/sampler.h"
#include "engine/scheduler.h"
#include "engine/sequence.h"

namespace invar::engine {

const char* finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::none: return "none";
    case FinishReason::stop: return "stop";
    case FinishReason::length: return "length";
    case FinishReason::cancelled: return "cancelled";
    case FinishReason::error: return "error";
  }
  return "?";
}

void Histogram::observe(double seconds) {
  ++count;
  sum += seconds;
  for (size_t i = 0; i < kBounds.size(); ++i)
    if (seconds <= kBounds[i]) ++counts[i];
}

void Histogram::add(const Histogram& other) {
  for (size_t i = 0; i < counts.size(); ++i) counts[i] += other.counts[i];
  count += other.count;
  sum += other.sum;
}

static int blocks_for(int tokens, int block_size) { return (tokens + block_size - 1) / block_size; }

static EngineOptions resolve(EngineOptions o, const model::ModelConfig& c) {
  if (c.max_position > 0) o.max_context = std::min(o.max_context, c.max_position);
  o.block_size = std::max(1, o.block_size);
  o.max_running = std::max(1, o.max_running);
  o.step_token_budget = std::max(1, o.step_token_budget);
  const int per_seq = blocks_for(o.max_context, o.block_size);
  // CUDA sizes an automatic cache from free memory once the weights are up (Engine::create).
  if (o.kv_blocks <= 0 && o.device == model::Device::cuda) return o;
  if (o.kv_blocks <= 0) o.kv_blocks = per_seq * std::min(o.max_running, 8);
  o.kv_blocks = std::max(o.kv_blocks, per_seq);  // one full-length request always fits
  return o;
}

// How a request's next token is drawn, and what of its logits row that needs (draw_path.h):
//   greedy without adjustments: the row summary's argmax (the sampler's greedy pick), no row;
//   sampled without adjustments, or with only a grammar (greedy or sampled), where the runner
//   draws on the device: the device draw, under the grammar's bitmask if any, no row;
//   otherwise (penalties, logit_bias, stop tokens masked before min_tokens, or a runner that
//   draws nothing): the host sampler over an adjusted copy of the row.
// top_logprobs > 0 adds the row (for the alternatives) without changing how the token is drawn,
// so asking for alternatives never changes a token. A token's own logprob is its raw logit minus
// the summary's log_z on every path, adjustments or masks or not (as vLLM's default raw
// logprobs). All of it depends on the request alone (R4, R6).
static bool has_penalties(const RequestParams& p) {
  return PenaltyParams{p.repetition_penalty, p.presence_penalty, p.frequency_penalty}.active();
}
static bool adjusts_row(const Sequence& s) {
  return has_penalties(s.params) || !s.params.logit_bias.empty() || s.before_min_tokens() ||
         s.grammar != nullptr;
}
static DrawPlan draw_plan_of(const Sequence& s, bool device_draws) {
  const RequestParams& p = s.params;
  return plan_draw(
      {.greedy = p.sampling.temperature <= 0.0f || p.sampling.top_k == 1,
       .host_adjustments = has_penalties(p) || !p.logit_bias.empty() || s.before_min_tokens(),
       .grammar = s.grammar != nullptr,
       .top_logprobs = p.top_logprobs},
      device_draws);
}

static model::RunnerOptions runner_options(const EngineOptions& o) {
  model::RunnerOptions r;
  r.device = o.device;
  r.kernels = o.kernels;
  r.kv_blocks = o.kv_blocks;
  r.block_size = o.block_size;
  r.kv_dtype = o.kv_dtype;
  r.threads = o.threads;
  r.tensor_parallel_size = o.tensor_parallel_size;
  r.tp_slices = o.tp_slices;
  r.cuda_device = o.cuda_device;
  r.gpu_memory_utilization = o.gpu_memory_utilization;
  r.cuda_graphs = !o.enforce_eager;
  r.pad_graph_batches = o.pad_graph_batches;
  r.prefill_attention = o.prefill_attention;
  r.max_step_tokens = o.step_token_budget;
  r.max_step_seqs = std::min(o.max_running, o.step_token_budget);
  r.max_blocks_per_seq = blocks_for(o.max_context, o.block_size);
  return r;
}

struct Engine::Impl {
  // `o` is resolved (resolve()); `r` runs the model with o.kv_blocks blocks of o.block_size.
  Impl(const ModelBundle& b, EngineOptions o, std::unique_ptr<model::ModelRunner> r)
      : bundle(b),
        opt(o),
        runner(std::move(r)),
        sample_pool(opt.threads),
        blocks(opt.kv_blocks, opt.block_size, opt.prefix_cache),
        device_draws(runner->draws_on_device() && !opt.host_sampling),
        fingerprint(make_fingerprint(
            b.model.weights, runner->backend_id() + "-" + kernels::kernel_mode_name(opt.kernels) +
                                 (runner->draws_on_device() && !device_draws ? "-host-sampling" : ""))) {
    stats.kv_blocks_total = opt.kv_blocks;
    thread = std::thread([this] { loop(); });
  }

  // --- shared with client threads (under mu) ---
  const ModelBundle& bundle;
  const EngineOptions opt;
  mutable std::mutex mu;
  std::condition_variable wake;
  std::condition_variable idle;
  std::deque<std::unique_ptr<Sequence>> incoming;
  std::unordered_set<uint64_t> cancels;
  std::unordered_set<uint64_t> live;  // submitted and not finished
  bool accepting = true;
  bool stopping = false;
  bool cancel_all = false;
  uint64_t ids_issued = 0;  // request ids: opt.first_request_id + i * opt.request_id_stride
  EngineStats stats;

  // --- engine thread only ---
  std::unique_ptr<model::ModelRunner> runner;
  ThreadPool sample_pool;  // draws the step's tokens, one row per sequence, in parallel
  BlockManager blocks;
  std::deque<std::unique_ptr<Sequence>> waiting;
  std::vector<std::unique_ptr<Sequence>> running;  // admission order
  // Sampled and grammar-masked tokens are drawn by the runner (draw_plan_of).
  const bool device_draws;
  model::StepLogits step_logits;
  std::vector<uint8_t> row_needs;        // per logit row: model::kWantRow / kDraw
  std::vector<kernels::SampleRowParams> row_draws;  // per logit row: the device draw's
  std::vector<int32_t> row_masks;  // the grammar bitmasks row_draws name (run_step's masks)
  std::deque<std::pair<Clock::time_point, int>> recent_tokens;  // for tokens/s
  std::string fingerprint;
  std::thread thread;

  Status validate(const RequestParams& p) const;
  void loop();
  void take_incoming();
  void run_step();
  void finish(Sequence& s, FinishReason why, std::string text, std::string error = {});
  // The ids a draw may not pick while s is short of min_tokens: its stop tokens.
  std::vector<int32_t> stop_tokens_of(const Sequence& s) const;
  // Prompt logprobs of the positions whose rows this step returned (entry.first_row ...).
  void score_prompt_rows(const std::vector<StepPlan::Entry>& entries);
  // Hands out the prompt logprobs with the request's first event after its prompt.
  void attach_prompt_logprobs(Sequence& s, RequestEvent& ev);
  // The next token of `s` and its logprobs from its logits row: depends on nothing but the
  // sequence and the row, so rows are drawn in parallel.
  struct Draw {
    int32_t token = 0;
    LogprobInfo info;
  };
  Draw draw_token(Sequence& s, const model::StepLogits& out, size_t i) const;
  void emit_token(Sequence& s, Draw draw);
  void end_request(Sequence& s, RequestEvent& ev);
  void publish_stats();
};

Status Engine::Impl::validate(const RequestParams& p) const {
  auto bad = [](std::string m) { return Status::error(StatusCode::invalid_argument, std::move(m)); };
  const int vocab = bundle.model.config.vocab_size;
  if (p.prompt.empty()) return bad("the prompt is empty: give at least one token");
  for (int32_t t : p.prompt)
    if (t < 0 || t >= vocab)
      return bad(fmt::format("prompt token id {} is outside the vocabulary [0, {})", t, vocab));
  if (p.max_tokens < 0)
    return bad(fmt::format("max_tokens must be at least 0 (got {})", p.max_tokens));
  if (p.min_tokens < 0 || p.min_tokens > p.max_tokens)
    return bad(fmt::format("min_tokens must be in [0, max_tokens = {}] (got {})", p.max_tokens,
                           p.min_tokens));
  if (int64_t(p.prompt.size()) + p.max_tokens > opt.max_context)
    return bad(fmt::format(
        "this model's context is {} tokens; the prompt has {} and max_tokens asks for {} more",
        opt.max_context, p.prompt.size(), p.max_tokens));
  const auto& s = p.sampling;
  if (!(s.temperature >= 0.0f && s.temperature <= 100.0f))
    return bad("temperature must be in [0, 100]");
  if (!(s.top_p > 0.0f && s.top_p <= 1.0f)) return bad("top_p must be in (0, 1]");
  if (!(s.min_p >= 0.0f && s.min_p <= 1.0f)) return bad("min_p must be in [0, 1]");
  if (s.top_k < 0) return bad("top_k must be >= 0 (0 disables it)");
  if (!(p.repetition_penalty > 0.0f && p.repetition_penalty <= 10.0f))
    return bad("repetition_penalty must be in (0, 10]");
  if (!(p.presence_penalty >= -2.0f && p.presence_penalty <= 2.0f))
    return bad("presence_penalty must be in [-2, 2]");
  if (!(p.frequency_penalty >= -2.0f && p.frequency_penalty <= 2.0f))
    return bad("frequency_penalty must be in [-2, 2]");
  if (p.top_logprobs > 20) return bad("top_logprobs must be at most 20");
  if (p.prompt_logprobs > 20) return bad("prompt_logprobs must be at most 20");
  for (auto [t, b] : p.logit_bias) {
    if (t < 0 || t >= vocab)
      return bad(fmt::format("logit_bias token id {} is outside the vocabulary [0, {})", t, vocab));
    if (!(b >= -100.0f && b <= 100.0f)) return bad("logit_bias values must be in [-100, 100]");
  }
  for (int32_t t : p.stop_ids)
    if (t < 0 || t >= vocab) return bad(fmt::format("stop token id {} is outside the vocabulary", t));
  if (p.grammar) {
    // A complete grammar allows only the stop tokens: there must be one, and none may be masked.
    if (p.ignore_eos && p.stop_ids.empty())
      return bad("structured output ends at a stop token: with ignore_eos, give stop_token_ids");
    if (p.min_tokens > 0)
      return bad(
          "min_tokens cannot be combined with structured output (the grammar decides "
          "where the output ends)");
  }
  return Status();
}

void Engine::Impl::loop() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu);
      wake.wait(lock, [&] {
        return stopping || !incoming.empty() || !cancels.empty() || !waiting.empty() ||
               !running.empty();
      });
      if (stopping && incoming.empty() && waiting.empty() && running.empty()) break;
    }
    take_incoming();
    if (!waiting.empty() || !running.empty()) run_step();
    publish_stats();
  }
  idle.notify_all();
}

// Moves new requests into the waiting queue and applies cancellations.
void Engine::Impl::take_incoming() {
  std::unordered_set<uint64_t> cancel_now;
  bool all;
  {
    std::lock_guard<std::mutex> lock(mu);
    for (auto& s : incoming) waiting.push_back(std::move(s));
    incoming.clear();
    cancel_now.swap(cancels);
    all = cancel_all;
  }
  if (cancel_now.empty() && !all) return;
  auto cancelled = [&](const std::unique_ptr<Sequence>& s) { return all || cancel_now.count(s->id); };
  for (auto& s : running)
    if (cancelled(s)) finish(*s, FinishReason::cancelled, {});
  for (auto& s : waiting)
    if (cancelled(s)) finish(*s, FinishReason::cancelled, {});
  std::erase_if(running, [](const auto& s) { return s->on_event == nullptr; });
  std::erase_if(waiting, [](const auto& s) { return s->on_event == nullptr; });
}

void Engine::Impl::run_step() {
  auto t0 = Clock::now();
  StepPlan step =
      schedule_step(waiting, running, blocks,
                    {.max_running = opt.max_running,
                     .token_budget = opt.step_token_budget,
                     .max_blocks_per_seq = blocks_for(opt.max_context, opt.block_size),
                     // what the runner holds room for (runner_options: max_step_seqs)
                     .max_logit_rows = std::min(opt.max_running, opt.step_token_budget)});
  {
    std::lock_guard<std::mutex> lock(mu);
    stats.preemptions += uint64_t(step.preempted);
    stats.cached_prompt_tokens += uint64_t(step.cached_tokens);
  }
  if (step.entries.empty()) return;

  // What each logits row needs, in row order: the entries' rows in entry order (every row of a
  // prompt chunk whose logprobs are asked for, else the row of an entry that completes).
  row_needs.clear();
  row_draws.clear();
  std::vector<Sequence*> masked;  // whose grammar bitmask goes with the draw, in mask order
  for (const auto& e : step.entries) {
    if (e.first_row >= 0) {
      const int scored = e.completes() ? e.count - 1 : e.count;
      row_needs.insert(row_needs.end(), size_t(scored), model::kWantRow);
      row_draws.insert(row_draws.end(), size_t(scored), kernels::SampleRowParams{});
    }
    if (!e.completes()) continue;
    Sequence& s = *e.seq;
    const DrawPlan plan = draw_plan_of(s, device_draws);
    uint8_t needs = s.params.max_tokens == 0 ? 0 : plan.needs;
    if (e.first_row >= 0) needs |= model::kWantRow;  // its prompt's last row is scored too
    row_needs.push_back(needs);
    kernels::SampleRowParams draw;  // read for kDraw rows only; the defaults: greedy
    if (needs & model::kDraw) {
      const auto& sp = s.params.sampling;
      // 1 / T as the host sampler computes it; R6: the uniform for the token at this
      // position, keyed by (seed, position). Greedy rows draw only under a mask.
      if (sp.temperature > 0.0f && sp.top_k != 1)
        draw = {1.0f / sp.temperature, sp.top_k, sp.top_p, sp.min_p,
                philox_uniform(sp.seed, uint64_t(s.tokens.size()))};
      if (plan.device_mask) {
        draw.mask = int32_t(masked.size());
        masked.push_back(&s);
      }
    }
    row_draws.push_back(draw);
  }
  // The grammars' bitmasks for this step, each from its own matcher (in parallel: XGrammar's
  // mask is the costly part of a structured-output step).
  const int64_t mask_words = kernels::token_mask_words(bundle.model.config.vocab_size);
  row_masks.resize(masked.size() * size_t(mask_words));
  sample_pool.parallel_for(int64_t(masked.size()), 1, [&](int64_t begin, int64_t end) {
    for (int64_t m = begin; m < end; ++m)
      masked[size_t(m)]->grammar->fill_bitmask(row_masks.data() + m * mask_words,
                                               bundle.model.config.vocab_size);
  });
  auto t1 = Clock::now();
  Status st = runner->run_step(step.batch, row_needs, row_draws, row_masks, step_logits);
  auto t2 = Clock::now();

  uint64_t prompt_tokens = 0;
  std::vector<std::pair<Sequence*, size_t>> due;  // sequences that draw a token, and their row
  for (const auto& e : step.entries) {
    Sequence& s = *e.seq;
    if (s.computed < s.prompt_len) prompt_tokens += uint64_t(std::min(e.count, s.prompt_len - s.computed));
    s.computed += e.count;
    if (!st.ok()) {
      finish(s, FinishReason::error, {}, st.message());
      continue;
    }
    blocks.register_prefix(s.tokens, s.computed, s.table);
    if (e.completes()) due.push_back({&s, size_t(e.logit_row)});
  }
  if (st.ok()) score_prompt_rows(step.entries);
  // A request for no tokens (max_tokens 0: its prompt logprobs) ends once its prompt is in.
  std::erase_if(due, [&](const std::pair<Sequence*, size_t>& d) {
    Sequence& s = *d.first;
    if (s.params.max_tokens > 0) return false;
    RequestEvent ev;
    ev.request_id = s.id;
    ev.finish = FinishReason::length;
    attach_prompt_logprobs(s, ev);
    end_request(s, ev);
    return true;
  });
  std::vector<Draw> draws(due.size());
  sample_pool.parallel_for(int64_t(due.size()), 4, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i)
      draws[size_t(i)] = draw_token(*due[size_t(i)].first, step_logits, due[size_t(i)].second);
  });
  for (size_t i = 0; i < due.size(); ++i) emit_token(*due[i].first, std::move(draws[i]));
  std::erase_if(running, [](const auto& s) { return s->on_event == nullptr; });

  std::lock_guard<std::mutex> lock(mu);
  stats.steps++;
  stats.prompt_tokens += prompt_tokens;
  stats.scheduling_seconds += std::chrono::duration<double>(t1 - t0).count();
  stats.forward_seconds += std::chrono::duration<double>(t2 - t1).count();
  stats.step_seconds.observe(std::chrono::duration<double>(Clock::now() - t0).count());
}

Engine::Impl::Draw Engine::Impl::draw_token(Sequence& s, const model::StepLogits& out,
                                             size_t i) const {
  const int vocab = bundle.model.config.vocab_size;
  const RequestParams& p = s.params;
  const uint8_t needs = row_needs[i];  // as run_step was asked
  const float* row = (needs & model::kWantRow) ? out.rows.data() + i * size_t(vocab) : nullptr;
  Draw d;
  float logit = 0.0f;  // the drawn token's own logit
  // As run_step planned it: nothing the plan reads has changed since.
  const DrawPath path = draw_plan_of(s, device_draws).path;
  if (path == DrawPath::argmax) {
    d.token = out.argmax[i];
    logit = out.max_logit[i];
  } else if (path == DrawPath::device) {
    // Drawn (or picked greedily) under the grammar's bitmask where there is one; the logit is
    // the raw row's.
    d.token = out.drawn[i];
    logit = out.drawn_logit[i];
  } else if (adjusts_row(s)) {
    // vLLM's order: logit_bias, the min_tokens and grammar masks, then the penalties. On a copy:
    // the reported logprob is the raw row's.
    std::vector<float> adjusted(row, row + vocab);
    apply_logit_bias(adjusted.data(), vocab, p.logit_bias);
    if (s.before_min_tokens()) mask_tokens(adjusted.data(), vocab, stop_tokens_of(s));
    if (s.grammar) s.grammar->mask(adjusted.data(), vocab);
    if (has_penalties(p)) {
      std::vector<int32_t> prompt(s.tokens.begin(), s.tokens.begin() + s.prompt_len);
      std::vector<int32_t> output(s.tokens.begin() + s.prompt_len, s.tokens.end());
      apply_penalties(adjusted.data(), vocab,
                      PenaltyParams{p.repetition_penalty, p.presence_penalty, p.frequency_penalty},
                      prompt, output);
    }
    d.token = s.sampler.sample(adjusted.data(), vocab, p.sampling, uint64_t(s.tokens.size()));
    logit = row[d.token];
  } else {  // R6: keyed by (seed, position)
    d.token = s.sampler.sample(row, vocab, p.sampling, uint64_t(s.tokens.size()));
    logit = row[d.token];
  }
  if (p.top_logprobs > 0) d.info = logprobs_of(row, vocab, d.token, p.top_logprobs, out.log_z[i]);
  else if (p.top_logprobs == 0) d.info.token_logprob = float(double(logit) - out.log_z[i]);
  return d;
}

std::vector<int32_t> Engine::Impl::stop_tokens_of(const Sequence& s) const {
  std::vector<int32_t> ids = s.params.stop_ids;
  if (!s.params.ignore_eos) {
    const auto& model_stops = bundle.tokenizer.stop_ids();
    ids.insert(ids.end(), model_stops.begin(), model_stops.end());
  }
  return ids;
}

// Row first_row + r of an entry is the logits of position computed + r (computed as it was
// before the step), which predicts the prompt token at position computed + r + 1. The token's
// logprob is logit - log_z, the same formula and the same row bits (the invariance contract)
// as when that token is drawn at that position: scoring a sampled sequence gives back the
// logprobs it was sampled with. Rows are scored in parallel, each on its own.
void Engine::Impl::score_prompt_rows(const std::vector<StepPlan::Entry>& entries) {
  struct Job {
    Sequence* seq;
    int position;  // of the token scored
    size_t row;
  };
  std::vector<Job> jobs;
  for (const auto& e : entries) {
    if (e.first_row < 0) continue;
    Sequence& s = *e.seq;
    if (s.prompt_logprobs.empty()) s.prompt_logprobs.resize(size_t(s.prompt_len - 1));
    const int start = s.computed - e.count;  // run_step has advanced computed
    for (int r = 0; r < e.count; ++r)
      if (start + r + 1 < s.prompt_len)
        jobs.push_back({&s, start + r + 1, size_t(e.first_row + r)});
  }
  const int vocab = bundle.model.config.vocab_size;
  sample_pool.parallel_for(int64_t(jobs.size()), 4, [&](int64_t begin, int64_t end) {
    for (int64_t j = begin; j < end; ++j) {
      const Job& job = jobs[size_t(j)];
      const float* row = step_logits.rows.data() + job.row * size_t(vocab);
      const int32_t token = job.seq->tokens[size_t(job.position)];
      LogprobInfo info = logprobs_of(row, vocab, token, job.seq->params.prompt_logprobs,
                                     step_logits.log_z[job.row]);
      PromptLogprob& out = job.seq->prompt_logprobs[size_t(job.position - 1)];
      out.id = token;
      out.logprob = info.token_logprob;
      out.rank = rank_of(row, vocab, token);
      out.top.clear();
      for (auto [id, lp] : info.top) out.top.push_back({id, lp});
    }
  });
}

void Engine::Impl::attach_prompt_logprobs(Sequence& s, RequestEvent& ev) {
  if (s.params.prompt_logprobs < 0 || s.prompt_logprobs_sent) return;
  ev.prompt_logprobs = std::move(s.prompt_logprobs);
  s.prompt_logprobs = {};
  s.prompt_logprobs_sent = true;
}

// Appends the drawn token to `s`, reports it, and ends the request when a stop condition holds.
// A stop token is reported too (its logprob, as vLLM does; usage counts it), its text only with
// include_stop_str_in_output. Before min_tokens nothing stops it but the length.
void Engine::Impl::emit_token(Sequence& s, Draw draw) {
  const RequestParams& p = s.params;
  const int32_t token = draw.token;
  s.tokens.push_back(token);
  if (s.grammar && !s.grammar->accept(token)) {
    // Cannot happen: the draw was masked to the tokens the grammar allows.
    finish(s, FinishReason::error, {},
           fmt::format("token {} was drawn outside the request's grammar", token));
    return;
  }
  // As vLLM: stop tokens were masked out of the draws up to the min_tokens-th token, and stop
  // strings match from the min_tokens-th token on.
  const bool may_stop = s.generated() >= p.min_tokens;

  const auto now = Clock::now();
  {
    std::lock_guard<std::mutex> lock(mu);
    if (s.generated() == 1)
      stats.time_to_first_token.observe(std::chrono::duration<double>(now - s.arrival).count());
    else
      stats.inter_token_latency.observe(std::chrono::duration<double>(now - s.last_token).count());
    stats.generated_tokens++;
  }
  s.last_token = now;
  recent_tokens.push_back({now, 1});

  RequestEvent ev;
  ev.request_id = s.id;
  attach_prompt_logprobs(s, ev);
  GeneratedToken g;
  g.id = token;
  g.text = bundle.tokenizer.token_bytes(token);
  if (p.top_logprobs >= 0) {
    g.logprob = draw.info.token_logprob;
    for (auto [id, lp] : draw.info.top) g.top.push_back({id, lp});
  }
  ev.tokens.push_back(std::move(g));

  const auto& model_stops = bundle.tokenizer.stop_ids();
  const bool stop_token =
      may_stop && ((!p.ignore_eos && std::find(model_stops.begin(), model_stops.end(), token) !=
                                         model_stops.end()) ||
                   std::find(p.stop_ids.begin(), p.stop_ids.end(), token) != p.stop_ids.end());
  bool stopped = false;
  if (stop_token) {
    if (p.include_stop_str_in_output) ev.text = s.text.push(token, &stopped, /*match_stops=*/false);
    ev.text += s.text.finish();
    ev.finish = FinishReason::stop;
    end_request(s, ev);
    return;
  }
  ev.text = s.text.push(token, &stopped, may_stop);
  const bool length = s.generated() >= p.max_tokens || int(s.tokens.size()) >= opt.max_context;
  if (stopped || length) {
    if (!stopped) ev.text += s.text.finish();
    ev.finish = stopped ? FinishReason::stop : FinishReason::length;
    end_request(s, ev);
    return;
  }
  s.on_event(ev);
}

void Engine::Impl::finish(Sequence& s, FinishReason why, std::string text, std::string error) {
  if (!s.on_event) return;
  RequestEvent ev;
  ev.request_id = s.id;
  ev.text = std::move(text);
  ev.finish = why;
  ev.error = std::move(error);
  end_request(s, ev);
}

// Frees the request's blocks, then reports its last event: when a client sees the end, the
// stats already show the blocks returned.
void Engine::Impl::end_request(Sequence& s, RequestEvent& ev) {
  ev.prompt_tokens = s.prompt_len;
  ev.completion_tokens = s.generated();
  ev.cached_prompt_tokens = s.cached_prompt_tokens;
  blocks.release(s.table);
  const auto now = Clock::now();
  {
    std::lock_guard<std::mutex> lock(mu);
    live.erase(s.id);
    stats.requests_finished++;
    if (ev.finish != FinishReason::none) stats.finished_by_reason[size_t(ev.finish) - 1]++;
    stats.e2e_request_latency.observe(std::chrono::duration<double>(now - s.arrival).count());
    if (s.admitted_once)
      stats.queue_time.observe(
          std::chrono::duration<double>(s.first_scheduled - s.arrival).count());
    stats.kv_blocks_used = blocks.num_used();
    stats.kv_blocks_cached = blocks.num_cached();
  }
  s.on_event(ev);
  s.on_event = nullptr;  // marks it finished
}

void Engine::Impl::publish_stats() {
  const auto now = Clock::now();
  while (!recent_tokens.empty() && now - recent_tokens.front().first > std::chrono::seconds(5))
    recent_tokens.pop_front();
  std::lock_guard<std::mutex> lock(mu);
  stats.waiting = int(waiting.size() + incoming.size());
  stats.running = int(running.size());
  stats.kv_blocks_used = blocks.num_used();
  stats.kv_blocks_cached = blocks.num_cached();
  stats.generated_tokens_per_second = double(recent_tokens.size()) / 5.0;
}

Result<std::unique_ptr<Engine>> Engine::create(const ModelBundle& bundle, EngineOptions options) {
  options = resolve(options, bundle.model.config);
  INVAR_ASSIGN_OR_RETURN(
      auto runner,
      make_model_runner(bundle.model.config, bundle.model.weights, runner_options(options)));
  const int per_seq = blocks_for(options.max_context, options.block_size);
  if (runner->kv_blocks() < per_seq)
    return Status::error(
        StatusCode::invalid_argument,
        fmt::format("the KV cache holds {} blocks of {} tokens, less than one request of "
                    "--max-context {} needs ({}): raise --gpu-memory-utilization or --kv-blocks, "
                    "or lower --max-context",
                    runner->kv_blocks(), options.block_size, options.max_context, per_seq));
  options.kv_blocks = runner->kv_blocks();
  return std::unique_ptr<Engine>(new Engine(bundle, options, std::move(runner)));
}

Engine::Engine(const ModelBundle& bundle, EngineOptions options) {
  options = resolve(options, bundle.model.config);
  options.device = model::Device::cpu;
  impl_ = std::make_unique<Impl>(
      bundle, options,
      model::make_cpu_runner(bundle.model.config, bundle.model.weights, runner_options(options)));
}

Engine::Engine(const ModelBundle& bundle, EngineOptions resolved,
               std::unique_ptr<model::ModelRunner> runner)
    : impl_(std::make_unique<Impl>(bundle, resolved, std::move(runner))) {}

Engine::~Engine() {
  shutdown(false);
  if (impl_->thread.joinable()) impl_->thread.join();
}

Result<uint64_t> Engine::submit(RequestParams params, EventCallback on_event) {
  INVAR_RETURN_IF_ERROR(impl_->validate(params));
  if (params.sampling.temperature > 0.0f && !params.has_seed) {
    params.sampling.seed = (uint64_t(std::random_device{}()) << 32) | std::random_device{}();
    params.has_seed = true;
  }
  std::lock_guard<std::mutex> lock(impl_->mu);
  if (!impl_->accepting)
    return Status::error(StatusCode::cancelled, "the engine is shutting down");
  if (int(impl_->live.size()) - impl_->stats.running >= impl_->opt.max_queue)
    return Status::error(StatusCode::resource_exhausted,
                         fmt::format("the request queue is full ({} waiting); retry later",
                                     impl_->opt.max_queue));
  const uint64_t id =
      impl_->opt.first_request_id + impl_->ids_issued++ * impl_->opt.request_id_stride;
  auto seq = std::make_unique<Sequence>(id, std::move(params), std::move(on_event),
                                        impl_->bundle.tokenizer);
  if (seq->params.grammar)
    seq->grammar =
        std::make_unique<GrammarMatcher>(seq->params.grammar, impl_->stop_tokens_of(*seq));
  impl_->incoming.push_back(std::move(seq));
  impl_->live.insert(id);
  impl_->wake.notify_one();
  return id;
}

void Engine::cancel(uint64_t request_id) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  if (!impl_->live.count(request_id)) return;
  impl_->cancels.insert(request_id);
  impl_->wake.notify_one();
}

void Engine::shutdown(bool drain) {
  std::unique_lock<std::mutex> lock(impl_->mu);
  impl_->accepting = false;
  if (!drain) impl_->cancel_all = true;
  impl_->stopping = true;
  impl_->wake.notify_one();
  impl_->idle.wait(lock, [&] { return impl_->live.empty() || !impl_->thread.joinable(); });
}

EngineStats Engine::stats() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->stats;
}
const EngineOptions& Engine::options() const { return impl_->opt; }
const ModelBundle& Engine::bundle() const { return impl_->bundle; }
const std::string& Engine::fingerprint() const { return impl_->fingerprint; }

}  // namespace invar::engine
