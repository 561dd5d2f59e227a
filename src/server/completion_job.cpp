// See completion_job.h.
#include "server/completion_job.h"

#include <fmt/format.h>

#include <atomic>
#include <boost/asio/post.hpp>
#include <chrono>
#include <random>

#include "server/completion_response.h"
#include "server/tool_calls.h"

namespace invar::server {

namespace {

std::string new_id(Endpoint endpoint) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return fmt::format("{}-{:016x}", endpoint == Endpoint::chat ? "chatcmpl" : "cmpl", rng());
}

class CompletionJob : public std::enable_shared_from_this<CompletionJob> {
 public:
  CompletionJob(engine::ServingEngine& engine, CompletionRequest request,
                std::shared_ptr<Exchange> exchange, ServerCounters& counters)
      : engine_(engine),
        request_(std::move(request)),
        exchange_(std::move(exchange)),
        counters_(counters),
        tok_(engine.bundle().tokenizer) {
    header_.endpoint = request_.endpoint;
    header_.id = new_id(request_.endpoint);
    header_.created = std::chrono::duration_cast<std::chrono::seconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
    header_.model = request_.model;
    header_.fingerprint = engine.fingerprint();
    int choices = request_.choices();
    ids_.resize(size_t(choices));
    results_.resize(size_t(choices));
    text_offsets_.resize(size_t(choices), 0);
    started_.resize(size_t(choices), false);
    if (request_.stream && request_.parse_tool_calls)
      tool_streams_.assign(size_t(choices), ToolCallStream(request_.tool_format));
    calls_sent_.resize(size_t(choices), 0);
    calls_live_.resize(size_t(choices), 0);
    call_slots_.resize(size_t(choices));
    broken_call_.resize(size_t(choices), false);
  }

  void start() {
    std::weak_ptr<CompletionJob> weak = weak_from_this();
    exchange_->on_disconnect([weak] {
      if (auto self = weak.lock()) self->cancel_all();
    });
    auto executor = exchange_->executor();
    for (int i = 0; i < request_.choices(); ++i) {
      // The engine thread must never wait on the network: events are handed to the strand.
      // The final event hands the job itself over too, so that the job, and the connection it
      // holds, are never destroyed on the engine thread (Asio objects die on their strand).
      auto on_event = [self = shared_from_this(), executor,
                       i](const engine::RequestEvent& ev) mutable {
        if (!self) return;  // nothing comes after the final event
        auto job = ev.finished() ? std::move(self) : self;
        net::post(executor, [job = std::move(job), i, ev] { job->on_event(i, ev); });
      };
      auto id = engine_.submit(request_.choice_params(i), std::move(on_event));
      if (!id.ok()) {
        if (id.status().code() == StatusCode::resource_exhausted) counters_.rejected_queue_full++;
        failed_ = true;
        cancel_all();  // the choices already submitted end with `cancelled`
        ApiError e = submit_error(id.status());
        HeaderList headers;
        if (e.status == 429) headers.emplace_back("Retry-After", "1");  // seconds
        exchange_->respond(http::status(e.status), "application/json", error_body(e), headers);
        return;
      }
      ids_[size_t(i)] = *id;
      ++submitted_;
      counters_.engine_requests_in_flight++;
    }
    if (request_.stream) exchange_->begin_stream("text/event-stream");
  }

 private:
  void cancel_all() {
    for (int i = 0; i < submitted_; ++i) {
      if (results_[size_t(i)].finish != engine::FinishReason::none) continue;
      engine_.cancel(ids_[size_t(i)]);
      if (exchange_->disconnected()) counters_.cancelled_disconnect++;
    }
  }

  void on_event(int i, const engine::RequestEvent& ev) {
    ChoiceResult& result = results_[size_t(i)];
    if (result.finish != engine::FinishReason::none) return;  // already final
    if (ev.finished()) {
      result.finish = ev.finish;
      ++finished_;
      counters_.engine_requests_in_flight--;
      usage_.completion_tokens += ev.completion_tokens;
      if (i % request_.n == 0) {  // each prompt counted once
        usage_.prompt_tokens += ev.prompt_tokens;
        usage_.cached_tokens += ev.cached_prompt_tokens;
      }
      if (ev.finish == engine::FinishReason::error) error_ = ev.error;
    }
    if (failed_ || exchange_->disconnected()) return;
    if (!ev.prompt_logprobs.empty()) result.prompt_logprobs = ev.prompt_logprobs;
    if (request_.stream) {
      stream_event(i, ev);
    } else {
      result.text += ev.text;
      if (request_.logprobs || request_.return_token_ids)
        result.tokens.insert(result.tokens.end(), ev.tokens.begin(), ev.tokens.end());
    }
    if (finished_ == request_.choices()) complete();
  }

  void stream_event(int i, const engine::RequestEvent& ev) {
    const bool chat = request_.endpoint == Endpoint::chat;
    const size_t prompt = size_t(i / request_.n);
    const bool first_chunk = !started_[size_t(i)];
    ChunkPart part;
    part.index = i;
    part.first = chat && first_chunk;
    part.text = ev.text;
    // Tool calls: the text goes through the parser, which holds back what may be a call.
    ToolCallDelta tools;
    if (!tool_streams_.empty()) {
      ToolCallStream& parser = tool_streams_[size_t(i)];
      tools = parser.feed(ev.text);
      if (ev.finished()) {
        ToolCallDelta rest = parser.finish();
        tools.content += rest.content;
        for (auto& u : rest.updates) tools.updates.push_back(std::move(u));
      }
      part.text = tools.content;
    }
    const std::vector<engine::GeneratedToken>* tokens = &ev.tokens;
    // echo: the choice's first chunk starts with the prompt (and, with logprobs, its tokens).
    const bool echo_now = request_.echo && first_chunk;
    std::vector<engine::GeneratedToken> echoed;
    if (echo_now) {
      part.text = request_.echo_texts[prompt] + part.text;
      if (request_.echo_logprobs()) {
        echoed =
            echo_tokens(request_.prompts[prompt], ev.prompt_logprobs, request_.top_logprobs, tok_);
        part.echoed = echoed.size();
        echoed.insert(echoed.end(), ev.tokens.begin(), ev.tokens.end());
        tokens = &echoed;
      }
    }
    // With tool parsing, a token held back by the parser (part of a call) sends nothing unless
    // its logprobs or id are asked for.
    const bool send_tokens =
        request_.logprobs || request_.return_token_ids || tool_streams_.empty();
    if (!part.text.empty() || (send_tokens && !tokens->empty()) || part.first || echo_now) {
      part.tokens = request_.logprobs || request_.return_token_ids ? tokens : nullptr;
      part.text_offset = text_offsets_[size_t(i)];
      if (first_chunk && request_.return_token_ids) part.prompt_ids = &request_.prompts[prompt];
      for (const auto& t : *tokens) text_offsets_[size_t(i)] += int(t.text.size());
      started_[size_t(i)] = true;
      exchange_->send_chunk(sse_event(format_chunk(header_, request_, part, tok_)));
    }
    for (const ToolCallUpdate& update : tools.updates) send_tool_update(i, update);
    if (ev.finish == engine::FinishReason::error) {
      ApiError e{500, "generation failed: " + ev.error, "server_error", "", ""};
      exchange_->send_chunk(sse_event(error_body(e)));
    }
    if (ev.finished()) {
      ChunkPart last;
      last.index = i;
      // A call that broke after it was announced leaves the client a half call: the choice
      // ends as failed, whatever else it did.
      last.finish = broken_call_[size_t(i)] ? engine::FinishReason::error : ev.finish;
      last.called_tools = calls_sent_[size_t(i)] > 0;
      exchange_->send_chunk(sse_event(format_chunk(header_, request_, last, tok_)));
    }
  }

  // A step of a call, streamed as OpenAI and vLLM stream calls: a delta with the call's index,
  // id, type, name and arguments "", then deltas that add pieces of its arguments. A call that
  // breaks after that is answered with an error event naming it (tool_calls.h says when).
  void send_tool_update(int i, const ToolCallUpdate& update) {
    std::vector<int>& slots = call_slots_[size_t(i)];  // the parser's call number -> index sent
    if (update.kind == ToolCallUpdate::Kind::begin) {
      // parallel_tool_calls: false keeps the first call that does not break, as the response
      // without streaming does.
      const bool room =
          request_.max_tool_calls == 0 || calls_live_[size_t(i)] < request_.max_tool_calls;
      slots.resize(size_t(update.call) + 1, -1);
      if (!room) return;
      slots[size_t(update.call)] = calls_sent_[size_t(i)]++;
      calls_live_[size_t(i)]++;
      ChunkPart head;
      head.index = i;
      head.first = !started_[size_t(i)];
      started_[size_t(i)] = true;
      head.tool_call = {slots[size_t(update.call)], tool_call_id(update.id, request_.tool_format),
                        update.text, ""};
      exchange_->send_chunk(sse_event(format_chunk(header_, request_, head, tok_)));
      return;
    }
    const int index = size_t(update.call) < slots.size() ? slots[size_t(update.call)] : -1;
    if (index < 0) return;  // a call left out by parallel_tool_calls: false
    if (update.kind == ToolCallUpdate::Kind::arguments) {
      ChunkPart args;
      args.index = i;
      args.tool_call = {index, "", "", update.text};
      exchange_->send_chunk(sse_event(format_chunk(header_, request_, args, tok_)));
    } else if (update.kind == ToolCallUpdate::Kind::broken) {
      broken_call_[size_t(i)] = true;
      calls_live_[size_t(i)]--;
      ApiError e{500,
                 fmt::format("tool call {} of choice {} turned out malformed after it began "
                             "streaming: it is not a call, discard it (its text follows as "
                             "content, as the response without streaming has it)",
                             index, i),
                 "server_error", "", "malformed_tool_call"};
      exchange_->send_chunk(sse_event(error_body(e)));
    }
  }

  void complete() {
    if (request_.stream) {
      if (request_.include_usage)
        exchange_->send_chunk(sse_event(format_usage_chunk(header_, usage_)));
      exchange_->send_chunk(kSseDone);
      exchange_->end_stream();
      return;
    }
    if (!error_.empty()) {
      ApiError e{500, "generation failed: " + error_, "server_error", "", ""};
      exchange_->respond(http::status::internal_server_error, "application/json", error_body(e));
      return;
    }
    exchange_->respond(http::status::ok, "application/json",
                       format_response(header_, request_, results_, usage_, tok_));
  }

  engine::ServingEngine& engine_;
  CompletionRequest request_;
  std::shared_ptr<Exchange> exchange_;
  ServerCounters& counters_;
  const tokenizer::Tokenizer& tok_;
  ResponseHeader header_;
  std::vector<uint64_t> ids_;
  std::vector<ChoiceResult> results_;
  std::vector<int> text_offsets_;
  std::vector<bool> started_;
  std::vector<ToolCallStream> tool_streams_;  // per choice, when streaming with tool parsing
  std::vector<int> calls_sent_;               // per choice: calls announced
  std::vector<int> calls_live_;               // per choice: calls announced, less those broken
  std::vector<std::vector<int>> call_slots_;  // per choice: parser call number -> index sent
  std::vector<bool> broken_call_;             // per choice: a call broke after it was announced
  Usage usage_;
  std::string error_;
  int submitted_ = 0;
  int finished_ = 0;
  bool failed_ = false;  // a submit failed: the error is sent, later events are ignored
};

}  // namespace

ApiError submit_error(const Status& status) {
  switch (status.code()) {
    case StatusCode::resource_exhausted:
      return {429, status.message() + "; retry later", "rate_limit_error", "", "queue_full"};
    case StatusCode::invalid_argument:
      return ApiError::bad_request("", status.message());
    case StatusCode::cancelled:
      return {503, "the server is shutting down", "server_error", "", "shutting_down"};
    default:
      return {500, status.message(), "server_error", "", ""};
  }
}

void start_completion(engine::ServingEngine& engine, CompletionRequest request,
                      std::shared_ptr<Exchange> exchange, ServerCounters& counters) {
  std::make_shared<CompletionJob>(engine, std::move(request), std::move(exchange), counters)
      ->start();
}

}  // namespace invar::server
