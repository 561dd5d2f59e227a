// One /v1/completions or /v1/chat/completions request in flight: submits its choices to the
// engine, gathers their events on the connection's strand (the engine thread only posts), and
// answers with one JSON response or an SSE stream. A client that leaves cancels its choices,
// which frees their KV blocks.
#pragma once

#include <memory>

#include "engine/engine.h"
#include "server/completion_request.h"
#include "server/http_server.h"
#include "server/metrics.h"

namespace invar::server {

// Starts serving `request` through `exchange`; called on the exchange's strand.
void start_completion(engine::ServingEngine& engine, CompletionRequest request,
                      std::shared_ptr<Exchange> exchange, ServerCounters& counters);

// The HTTP status for an engine submit() failure: 429 when the queue is full, 400 for bad
// input, 503 once the engine is shutting down, 500 otherwise.
ApiError submit_error(const Status& status);

}  // namespace invar::server
