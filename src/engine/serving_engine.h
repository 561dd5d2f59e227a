// What the HTTP server needs of an engine: submit, cancel, shut down, stats and the model. One
// Engine provides it, and so does a ReplicaSet of engines (data parallelism); because each
// engine is batch-invariant, which one serves a request changes none of its bits.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "core/status.h"
#include "engine/model_bundle.h"
#include "engine/request.h"
#include "engine/stats.h"

namespace invar::engine {

struct EngineOptions;

// Called on an engine thread: must not block. The last event of a request has finished().
using EventCallback = std::function<void(const RequestEvent&)>;

class ServingEngine {
 public:
  virtual ~ServingEngine() = default;

  // Thread-safe. Fails with invalid_argument (empty or too long prompt, bad parameters) or
  // resource_exhausted (queue full); on success returns the request id.
  virtual Result<uint64_t> submit(RequestParams params, EventCallback on_event) = 0;
  // Thread-safe; a no-op for unknown or finished ids. The request ends with `cancelled` and its
  // KV blocks are freed.
  virtual void cancel(uint64_t request_id) = 0;
  // Stops taking requests; in-flight ones finish (drain) or are cancelled.
  virtual void shutdown(bool drain) = 0;

  virtual EngineStats stats() const = 0;
  // The options one engine runs with (with replicas: each replica's).
  virtual const EngineOptions& options() const = 0;
  virtual const ModelBundle& bundle() const = 0;
  // model hash + engine build + kernel mode: equal fingerprints promise equal bits.
  virtual const std::string& fingerprint() const = 0;
};

}  // namespace invar::engine
