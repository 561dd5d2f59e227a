// A POST body through the request parser and validator, as the server runs it before anything
// reaches the engine: the first byte picks the endpoint (even: /v1/completions, odd:
// /v1/chat/completions, SmolLM2's tokenizer and chat template), the rest is the body as
// received. Either the body becomes a CompletionRequest the engine accepts as it is (the
// ranges Engine::submit checks, prompts inside the vocabulary and the context), or it is refused
// with a 4xx whose body is an OpenAI error object naming what was wrong.
#include <cmath>
#include <nlohmann/json.hpp>

#include "fuzz/fuzz_targets.h"
#include "fuzz/fuzz_util.h"
#include "server/completion_request.h"
#include "server/completion_response.h"
#include "test_paths.h"
#include "tokenizer/tokenizer.h"

namespace invar::fuzz {

namespace {

void check_refusal(const server::ApiError& e) {
  INVAR_FUZZ_CHECK(e.status >= 400 && e.status < 500, "status {} for a bad request", e.status);
  INVAR_FUZZ_CHECK(!e.message.empty(), "a refusal without a message");
  const auto body = nlohmann::json::parse(server::error_body(e), nullptr, false);
  INVAR_FUZZ_CHECK(body.is_object() && body.size() == 1 && body.contains("error"), "error body {}",
                   server::error_body(e));
  const auto& err = body["error"];
  for (const char* key : {"message", "type", "param", "code"})
    INVAR_FUZZ_CHECK(err.contains(key), "error body without '{}'", key);
  INVAR_FUZZ_CHECK(err["message"].is_string() && err["type"].is_string(), "error body {}",
                   server::error_body(e));
}

// What Engine::submit would refuse (engine.cpp validate()), checked on the parsed request.
void check_accepted(const server::CompletionRequest& r, const server::RequestLimits& limits,
                    int32_t vocab) {
  INVAR_FUZZ_CHECK(!r.prompts.empty(), "no prompt");
  INVAR_FUZZ_CHECK(r.max_tokens.size() == r.prompts.size(), "max_tokens per prompt");
  INVAR_FUZZ_CHECK(r.n >= 1 && r.choices() <= limits.max_choices, "n {} x {} prompts", r.n,
                   r.prompts.size());
  for (int i = 0; i < r.choices(); ++i) {
    const engine::RequestParams p = r.choice_params(i);
    INVAR_FUZZ_CHECK(!p.prompt.empty(), "an empty prompt");
    for (int32_t t : p.prompt) INVAR_FUZZ_CHECK(t >= 0 && t < vocab, "prompt token {}", t);
    INVAR_FUZZ_CHECK(p.max_tokens >= 1, "max_tokens {}", p.max_tokens);
    INVAR_FUZZ_CHECK(int64_t(p.prompt.size()) + p.max_tokens <= limits.max_context,
                     "{} prompt + {} tokens past the context", p.prompt.size(), p.max_tokens);
    const auto& s = p.sampling;
    INVAR_FUZZ_CHECK(s.temperature >= 0.0f && s.temperature <= 2.0f, "temperature");
    INVAR_FUZZ_CHECK(s.top_p > 0.0f && s.top_p <= 1.0f, "top_p");
    INVAR_FUZZ_CHECK(s.min_p >= 0.0f && s.min_p <= 1.0f, "min_p");
    INVAR_FUZZ_CHECK(s.top_k >= 0, "top_k");
    INVAR_FUZZ_CHECK(p.repetition_penalty > 0.0f && p.repetition_penalty <= 10.0f, "rep");
    INVAR_FUZZ_CHECK(p.presence_penalty >= -2.0f && p.presence_penalty <= 2.0f, "presence");
    INVAR_FUZZ_CHECK(p.frequency_penalty >= -2.0f && p.frequency_penalty <= 2.0f, "frequency");
    INVAR_FUZZ_CHECK(p.top_logprobs >= -1 && p.top_logprobs <= limits.max_logprobs, "logprobs");
    INVAR_FUZZ_CHECK(int(p.stop_strings.size()) <= limits.max_stop_strings, "stop strings");
    for (int32_t t : p.stop_ids) INVAR_FUZZ_CHECK(t >= 0 && t < vocab, "stop id {}", t);
  }
}

}  // namespace

int fuzz_request(const uint8_t* data, size_t size) {
  static const auto* tok = [] {
    auto t = tokenizer::Tokenizer::from_hf_dir(testing::test_data("tokenizer/smollm2"));
    INVAR_FUZZ_CHECK(t.ok(), "{}", t.status().message());
    return new tokenizer::Tokenizer(std::move(t).value());
  }();
  if (size == 0) return 0;
  server::RequestLimits limits;
  limits.served_model = "smol";
  limits.max_context = 2048;
  const auto endpoint = data[0] % 2 ? server::Endpoint::chat : server::Endpoint::completions;
  const std::string_view body(reinterpret_cast<const char*>(data) + 1, size - 1);
  server::CompletionRequest request;
  if (auto e = server::parse_completion_request(endpoint, body, *tok, limits, &request))
    check_refusal(*e);
  else
    check_accepted(request, limits, tok->vocab_size());
  return 0;
}

}  // namespace invar::fuzz
