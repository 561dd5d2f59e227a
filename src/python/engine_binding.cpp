// invar._core: an invar engine inside the Python process (python/invar wraps it as invar.LLM).
// Requests arrive as JSON bodies of the server's shape (/v1/completions, /v1/chat/completions),
// written by python/invar/llm.py from SamplingParams, and go through the server's own parser: a
// Python request and an HTTP request with the same fields become the same engine request, so
// they get the same tokens and logprob bits, and a bad field gets the server's message. All the
// requests of one call are submitted before any is awaited, so the engine's scheduler batches
// them as it batches a server's concurrent clients (which, by the invariance contract, changes
// no request's bits).
#include <nanobind/nanobind.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "engine/engine.h"
#include "engine/grammar.h"
#include "engine/model_bundle.h"
#include "engine/request_collector.h"
#include "server/completion_request.h"
#include "tokenizer/chat_template.h"

namespace nb = nanobind;

namespace invar::python {

namespace {

// The CPU serving defaults of `invar serve` (src/cli/serve.cpp); none of them changes any bits.
constexpr int kDefaultMaxRunning = 64, kDefaultStepTokens = 512, kDefaultContext = 4096;

// What one choice of one request returned.
struct Choice {
  std::vector<int32_t> prompt_token_ids;
  std::vector<int32_t> token_ids;
  std::string text;
  std::vector<float> logprobs;  // per generated token: the chosen token's
  // per generated token: the best alternatives (logprobs > 0), most likely first
  std::vector<std::vector<std::pair<int32_t, float>>> top_logprobs;
  // per prompt token (prompt_logprobs asked): its logprob given the tokens before it; none for
  // the first, which has nothing before it
  std::vector<std::optional<float>> prompt_logprobs;
  std::string finish_reason;  // "stop" or "length"
};

struct EngineArgs {
  std::string model;
  std::string device = "cpu";
  std::string kernels = "invariant";
  int threads = 0;
  int max_model_len = 0;  // 0: 4096, or less when the model's own context is shorter
  std::string kv_cache_dtype = "f16";
  std::string weight_dtype;  // empty: as stored in the file
  int max_num_seqs = 0;
  int max_num_batched_tokens = 0;
  bool enable_prefix_caching = true;
};

[[noreturn]] void raise(const Status& st) {
  if (st.code() == StatusCode::invalid_argument || st.code() == StatusCode::not_found)
    throw std::invalid_argument(st.message());  // ValueError
  throw std::runtime_error(st.message());
}

Choice to_choice(const engine::RequestParams& params, const engine::RequestOutcome& o) {
  Choice c;
  c.prompt_token_ids = params.prompt;
  c.token_ids = o.ids;
  c.text = o.text;
  // o.logprobs holds, per token, its own logprob and then its alternatives'.
  size_t at = 0;
  for (size_t i = 0; i < o.ids.size() && at < o.logprobs.size(); ++i) {
    c.logprobs.push_back(o.logprobs[at]);
    at += 1 + o.top[i].size();
    if (params.top_logprobs > 0) {
      auto& top = c.top_logprobs.emplace_back();
      for (const auto& t : o.top[i]) top.emplace_back(t.id, t.logprob);
    }
  }
  if (params.prompt_logprobs >= 0) {
    c.prompt_logprobs.emplace_back(std::nullopt);
    for (const auto& p : o.prompt_logprobs) c.prompt_logprobs.emplace_back(p.logprob);
  }
  c.finish_reason = engine::finish_reason_name(o.finish);
  return c;
}

}  // namespace

class PythonEngine {
 public:
  explicit PythonEngine(const EngineArgs& a) {
    auto device = model::parse_device(a.device);
    if (!device.ok()) raise(device.status());
    if (a.kernels != "invariant" && a.kernels != "fast")
      throw std::invalid_argument("kernels must be \"invariant\" or \"fast\" (a negative "
                                  "control only), not \"" + a.kernels + "\"");
    if (a.kv_cache_dtype != "f16" && a.kv_cache_dtype != "f32")
      throw std::invalid_argument("kv_cache_dtype must be \"f16\" or \"f32\"");
    if (a.weight_dtype != "" && a.weight_dtype != "f32" && a.weight_dtype != "bf16")
      throw std::invalid_argument("weight_dtype must be None, \"f32\" or \"bf16\"");
    if (a.threads < 0 || a.max_model_len < 0 || a.max_num_seqs < 0 || a.max_num_batched_tokens < 0)
      throw std::invalid_argument(
          "threads, max_model_len, max_num_seqs and max_num_batched_tokens must be >= 0");

    model::LoadOptions load;
    if (a.weight_dtype == "f32") load.weight_dtype = DType::f32;
    if (a.weight_dtype == "bf16") load.weight_dtype = DType::bf16;
    auto bundle = engine::open_model(a.model, load);
    if (!bundle.ok()) raise(bundle.status());
    bundle_ = std::make_unique<engine::ModelBundle>(std::move(bundle).value());

    // As `invar serve` sizes its engine.
    engine::EngineOptions eo;
    eo.device = *device;
    eo.threads = a.threads;
    eo.kernels = a.kernels == "fast" ? kernels::KernelMode::fast : kernels::KernelMode::invariant;
    eo.kv_dtype = a.kv_cache_dtype == "f32" ? DType::f32 : DType::f16;
    eo.max_context = a.max_model_len > 0 ? a.max_model_len : kDefaultContext;
    if (bundle_->model.config.max_position > 0)
      eo.max_context = std::min(eo.max_context, bundle_->model.config.max_position);
    eo.max_running = a.max_num_seqs > 0 ? a.max_num_seqs : kDefaultMaxRunning;
    eo.step_token_budget =
        a.max_num_batched_tokens > 0 ? a.max_num_batched_tokens : kDefaultStepTokens;
    eo.prefix_cache = a.enable_prefix_caching;
    // Offline use: every request of a call is known up front, none is refused for a full queue.
    eo.max_queue = 1 << 24;
    auto created = engine::Engine::create(*bundle_, eo);
    if (!created.ok()) raise(created.status());
    engine_ = std::move(created).value();

    limits_.max_context = engine_->options().max_context;
    limits_.max_choices = 1 << 16;
    if (auto tmpl = bundle_->tokenizer.chat_template(); tmpl.ok())
      limits_.tool_format = server::tool_call_format_for_template((*tmpl)->source());
    grammars_ = std::make_unique<engine::GrammarCompiler>(bundle_->tokenizer,
                                                          bundle_->model.config.vocab_size);
  }

  ~PythonEngine() {
    engine_.reset();  // joins the engine thread before the model it runs is freed
  }

  // Runs every body (JSON text of a /v1/completions or, with chat, /v1/chat/completions
  // request) at once; per body, its choices. Raises ValueError naming the field for a bad body,
  // before anything runs.
  std::vector<std::vector<Choice>> run(bool chat, const std::vector<std::string>& bodies) {
    const auto endpoint = chat ? server::Endpoint::chat : server::Endpoint::completions;
    std::vector<server::CompletionRequest> requests(bodies.size());
    for (size_t i = 0; i < bodies.size(); ++i) {
      if (auto e = server::parse_completion_request(endpoint, bodies[i], bundle_->tokenizer,
                                                    limits_, &requests[i], grammars_.get())) {
        std::string where = bodies.size() > 1 ? "request " + std::to_string(i) + ": " : "";
        throw std::invalid_argument(where + e->message);
      }
    }
    std::vector<engine::RequestParams> params;
    for (const auto& r : requests)
      for (int c = 0; c < r.choices(); ++c) params.push_back(r.choice_params(c));

    engine::RequestCollector collector;
    std::vector<uint64_t> submitted;
    Status refused;
    {
      nb::gil_scoped_release unlocked;  // the engine thread runs while Python goes on
      for (size_t slot = 0; slot < params.size(); ++slot) {
        auto id = engine_->submit(params[slot], collector.callback(slot));
        if (id.ok()) {
          submitted.push_back(*id);
          continue;
        }
        collector.abandon(slot, id.status().message());
        refused = id.status();
        for (size_t later = slot + 1; later < params.size(); ++later) {
          collector.callback(later);
          collector.abandon(later, "not submitted");
        }
        for (uint64_t s : submitted) engine_->cancel(s);
        break;
      }
    }
    wait_interruptibly(collector, submitted);
    std::vector<engine::RequestOutcome> outcomes = collector.wait();  // all ended: no wait
    if (!refused.ok()) raise(refused);

    std::vector<std::vector<Choice>> out(requests.size());
    size_t slot = 0;
    for (size_t i = 0; i < requests.size(); ++i) {
      for (int c = 0; c < requests[i].choices(); ++c, ++slot) {
        const auto& o = outcomes[slot];
        if (o.finish == engine::FinishReason::error) throw std::runtime_error(o.error);
        out[i].push_back(to_choice(params[slot], o));
      }
    }
    return out;
  }

  // Waits for the requests of one call with the GIL released, in slices; between slices, with
  // the GIL held, runs Python's signal handlers. When one raises (Ctrl-C: KeyboardInterrupt),
  // the call's requests are cancelled (each ends at the engine's next step and frees its KV
  // blocks), awaited, and the exception goes to the caller: the engine is idle again and ready
  // for the next call. Python runs handlers on its main thread only, so a call from another
  // thread is not interrupted.
  void wait_interruptibly(engine::RequestCollector& collector,
                          const std::vector<uint64_t>& submitted) {
    constexpr auto kSlice = std::chrono::milliseconds(20);  // how late a Ctrl-C may be seen
    for (;;) {
      bool ended = false;
      {
        nb::gil_scoped_release unlocked;
        ended = collector.wait_for(kSlice);
      }
      if (ended) return;
      if (PyErr_CheckSignals() == 0) continue;
      nb::python_error interrupted;  // takes the pending exception out of the interpreter
      {
        nb::gil_scoped_release unlocked;
        for (uint64_t id : submitted) engine_->cancel(id);
        collector.wait();
      }
      throw interrupted;  // nanobind puts it back for the caller
    }
  }

  std::vector<int32_t> encode(const std::string& text, bool add_special_tokens) const {
    const auto& tok = bundle_->tokenizer;
    return tok.encode(text, add_special_tokens && tok.add_bos_default(), /*parse_special=*/true);
  }

  std::string decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const {
    const auto& tok = bundle_->tokenizer;
    for (int32_t id : ids)
      if (id < 0 || id >= tok.vocab_size())
        throw std::invalid_argument("token id " + std::to_string(id) +
                                    " is outside the vocabulary [0, " +
                                    std::to_string(tok.vocab_size()) + ")");
    return tok.decode(ids, skip_special_tokens);
  }

  int max_model_len() const { return engine_->options().max_context; }
  // KV blocks held by live sequences: 0 between calls, after an interrupted one too (a request
  // frees its blocks before its end is reported).
  int kv_blocks_used() const { return engine_->stats().kv_blocks_used; }
  int vocab_size() const { return bundle_->tokenizer.vocab_size(); }
  const std::string& fingerprint() const { return engine_->fingerprint(); }

 private:
  std::unique_ptr<engine::ModelBundle> bundle_;  // outlives engine_ (declared first)
  std::unique_ptr<engine::Engine> engine_;
  server::RequestLimits limits_;
  std::unique_ptr<engine::GrammarCompiler> grammars_;
};

}  // namespace invar::python

NB_MODULE(_core, m) {
  using namespace invar::python;
  m.doc() = "invar's engine in-process; use invar.LLM rather than this module";

  nb::class_<Choice>(m, "Choice")
      .def_ro("prompt_token_ids", &Choice::prompt_token_ids)
      .def_ro("token_ids", &Choice::token_ids)
      .def_ro("text", &Choice::text)
      .def_ro("logprobs", &Choice::logprobs)
      .def_ro("top_logprobs", &Choice::top_logprobs)
      .def_ro("prompt_logprobs", &Choice::prompt_logprobs)
      .def_ro("finish_reason", &Choice::finish_reason);

  nb::class_<PythonEngine>(m, "Engine")
      .def(
          "__init__",
          [](PythonEngine* self, std::string model, std::string device, std::string kernels,
             int threads, int max_model_len, std::string kv_cache_dtype, std::string weight_dtype,
             int max_num_seqs, int max_num_batched_tokens, bool enable_prefix_caching) {
            EngineArgs a{std::move(model), std::move(device), std::move(kernels),
                         threads,           max_model_len,     std::move(kv_cache_dtype),
                         std::move(weight_dtype), max_num_seqs, max_num_batched_tokens,
                         enable_prefix_caching};
            nb::gil_scoped_release unlocked;  // loading takes a while; other threads may run
            new (self) PythonEngine(a);
          },
          nb::arg("model"), nb::arg("device"), nb::arg("kernels"), nb::arg("threads"),
          nb::arg("max_model_len"), nb::arg("kv_cache_dtype"), nb::arg("weight_dtype"),
          nb::arg("max_num_seqs"), nb::arg("max_num_batched_tokens"),
          nb::arg("enable_prefix_caching"))
      .def("run", &PythonEngine::run, nb::arg("chat"), nb::arg("bodies"))
      .def("encode", &PythonEngine::encode, nb::arg("text"), nb::arg("add_special_tokens"))
      .def("decode", &PythonEngine::decode, nb::arg("ids"), nb::arg("skip_special_tokens"))
      .def_prop_ro("max_model_len", &PythonEngine::max_model_len)
      .def_prop_ro("vocab_size", &PythonEngine::vocab_size)
      .def_prop_ro("kv_blocks_used", &PythonEngine::kv_blocks_used)
      .def_prop_ro("fingerprint", &PythonEngine::fingerprint);
}
