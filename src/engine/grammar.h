// Structured output: a grammar (a JSON schema, any JSON object, a regex, a list of choices or an
// EBNF grammar) compiled against the model's vocabulary by XGrammar, and the per-request matcher
// that turns it into a token mask before each draw. The mask sets the logits of the tokens the
// grammar forbids next to -inf and leaves every other logit's bits as they were.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/status.h"
#include "tokenizer/tokenizer.h"

namespace invar::engine {

struct GrammarSpec {
  enum class Kind : uint8_t { json_object, json_schema, regex, choice, ebnf };
  Kind kind = Kind::json_object;
  std::string source;                // the schema (JSON text), the regex or the EBNF grammar
  std::vector<std::string> choices;  // Kind::choice: the output is exactly one of them
  // Kind::json_schema: literal text before and after the JSON (a tool call's tags).
  std::string prefix, suffix;
};

// A grammar compiled for one vocabulary; shared, read-only, by every request that uses it.
class CompiledGrammar;

// Compiles grammars for one model's vocabulary (built on first use: a model never asked for
// structured output pays nothing). Thread-safe. The last `cache_entries` compiled grammars are
// kept, keyed by their spec, and the least recently used one is dropped for a new one: a
// compiled grammar holds token masks per rule (from kilobytes to a few megabytes for a large
// schema), and clients that send a new schema every time must not grow the server without
// bound. Requests in flight keep their grammar alive whether or not it is still cached.
class GrammarCompiler {
 public:
  static constexpr size_t kDefaultCacheEntries = 64;

  // `vocab_size` is the model's logit row length (it may exceed the tokenizer's vocabulary; the
  // extra ids are never allowed).
  GrammarCompiler(const tokenizer::Tokenizer& tok, int vocab_size,
                  size_t cache_entries = kDefaultCacheEntries);
  ~GrammarCompiler();
  GrammarCompiler(const GrammarCompiler&) = delete;
  GrammarCompiler& operator=(const GrammarCompiler&) = delete;

  // An invalid_argument error, with XGrammar's message, for a schema, regex or grammar it cannot
  // compile.
  Result<std::shared_ptr<const CompiledGrammar>> compile(const GrammarSpec& spec);

  struct CacheStats {
    size_t entries = 0;  // grammars cached now (at most cache_entries)
    uint64_t hits = 0, misses = 0;
  };
  CacheStats cache_stats() const;

 private:
  Result<std::shared_ptr<const CompiledGrammar>> compile_uncached(const GrammarSpec& spec);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Where one request stands in its grammar. Once the grammar is complete only the stop tokens
// are allowed; accepting one terminates the matcher.
class GrammarMatcher {
 public:
  GrammarMatcher(std::shared_ptr<const CompiledGrammar> grammar, std::vector<int32_t> stop_tokens);
  ~GrammarMatcher();
  GrammarMatcher(const GrammarMatcher&) = delete;
  GrammarMatcher& operator=(const GrammarMatcher&) = delete;

  // Sets logits[t] = -inf for every token t the grammar does not allow next; the other logits
  // are not written. logits: [vocab], vocab = the compiler's vocab_size.
  void mask(float* logits, int vocab);
  // The same mask as bits: words[j / 32] bit j % 32 is 1 when token j is allowed next (XGrammar's
  // packed layout, what the CUDA sampler takes). Writes ceil(vocab / 32) words; ids outside the
  // tokenizer's vocabulary and past `vocab` are 0. Thread-safe across matchers, not within one.
  void fill_bitmask(int32_t* words, int vocab);
  // Advances past `token`; false if the grammar does not allow it (the state is unchanged).
  bool accept(int32_t token);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace invar::engine
