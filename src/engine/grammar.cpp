// XGrammar behind engine/grammar.h. The vocabulary is handed over as each token's raw bytes
// (XGrammar's RAW vocab type), so byte-level and SentencePiece tokenizers need no decoding rules
// of their own; control tokens are given as "" (XGrammar never allows those inside a grammar)
// and the model's end tokens as its stop tokens.
#include "engine/grammar.h"

#include <dlpack/dlpack.h>
#include <fmt/format.h>
#include <xgrammar/xgrammar.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <list>
#include <mutex>
#include <optional>
#include <unordered_map>

#include "engine/sampler.h"
#include "kernels/types.h"

namespace invar::engine {

class CompiledGrammar {
 public:
  explicit CompiledGrammar(xgrammar::CompiledGrammar g) : grammar(std::move(g)) {}
  xgrammar::CompiledGrammar grammar;
};

namespace {

// vLLM's escaping of a choice inside an EBNF string literal.
std::string ebnf_string(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out + "\"";
}

// The cache key: every field of the spec, each preceded by its length (no two specs share one).
std::string cache_key(const GrammarSpec& spec) {
  std::string key(1, char('0' + int(spec.kind)));
  auto add = [&key](const std::string& s) { key += std::to_string(s.size()) + ':' + s; };
  add(spec.source);
  add(spec.prefix);
  add(spec.suffix);
  for (const auto& c : spec.choices) add(c);
  return key;
}

}  // namespace

struct GrammarCompiler::Impl {
  Impl(const tokenizer::Tokenizer& t, int v, size_t entries)
      : tok(t), vocab_size(v), cache_entries(std::max<size_t>(1, entries)) {}
  const tokenizer::Tokenizer& tok;
  int vocab_size;
  std::mutex mu;  // guards the lazy construction; xgrammar's compiler is thread-safe
  std::optional<xgrammar::GrammarCompiler> compiler;

  // LRU cache, most recent first. XGrammar's own cache is off: it has no bound on entries.
  using Entry = std::pair<std::string, std::shared_ptr<const CompiledGrammar>>;
  const size_t cache_entries;
  mutable std::mutex cache_mu;
  std::list<Entry> lru;
  std::unordered_map<std::string, std::list<Entry>::iterator> index;
  uint64_t hits = 0, misses = 0;

  std::shared_ptr<const CompiledGrammar> lookup(const std::string& key) {
    std::lock_guard<std::mutex> lock(cache_mu);
    auto it = index.find(key);
    if (it == index.end()) {
      ++misses;
      return nullptr;
    }
    ++hits;
    lru.splice(lru.begin(), lru, it->second);
    return it->second->second;
  }

  void insert(const std::string& key, std::shared_ptr<const CompiledGrammar> g) {
    std::lock_guard<std::mutex> lock(cache_mu);
    if (index.count(key)) return;  // compiled twice at once: keep the first
    lru.emplace_front(key, std::move(g));
    index[key] = lru.begin();
    if (lru.size() > cache_entries) {
      index.erase(lru.back().first);
      lru.pop_back();
    }
  }

  xgrammar::GrammarCompiler& get() {
    std::lock_guard<std::mutex> lock(mu);
    if (!compiler) {
      const int32_t n = tok.vocab_size();
      std::vector<std::string> vocab(static_cast<size_t>(n));
      for (int32_t id = 0; id < n; ++id)
        if (!tok.is_special(id)) vocab[size_t(id)] = tok.token_bytes(id);
      std::vector<int32_t> stops = tok.stop_ids();
      xgrammar::TokenizerInfo info(vocab, xgrammar::VocabType::RAW, std::max(n, vocab_size), stops);
      // Two compile threads: the grammar's token masks are precomputed per rule.
      compiler.emplace(info, /*max_threads=*/2, /*cache_enabled=*/false);
    }
    return *compiler;
  }
};

GrammarCompiler::GrammarCompiler(const tokenizer::Tokenizer& tok, int vocab_size,
                                 size_t cache_entries)
    : impl_(std::make_unique<Impl>(tok, vocab_size, cache_entries)) {}
GrammarCompiler::~GrammarCompiler() = default;

GrammarCompiler::CacheStats GrammarCompiler::cache_stats() const {
  std::lock_guard<std::mutex> lock(impl_->cache_mu);
  return {impl_->lru.size(), impl_->hits, impl_->misses};
}

Result<std::shared_ptr<const CompiledGrammar>> GrammarCompiler::compile(const GrammarSpec& spec) {
  const std::string key = cache_key(spec);
  if (auto cached = impl_->lookup(key)) return cached;
  auto compiled = compile_uncached(spec);
  if (compiled.ok()) impl_->insert(key, *compiled);
  return compiled;
}

Result<std::shared_ptr<const CompiledGrammar>> GrammarCompiler::compile_uncached(
    const GrammarSpec& spec) {
  using Kind = GrammarSpec::Kind;
  try {
    xgrammar::GrammarCompiler& c = impl_->get();
    // Compact JSON (no free whitespace between tokens, ", " and ": " as separators), as vLLM
    // with disable_any_whitespace: a model free to add whitespace may never stop adding it.
    auto json_schema = [&](const std::string& schema) {
      return c.CompileJSONSchema(schema, /*any_whitespace=*/false);
    };
    // The JSON between literal text: prefix, JSON, suffix in sequence.
    auto framed_schema = [&](const GrammarSpec& s) {
      std::vector<xgrammar::Grammar> parts;
      if (!s.prefix.empty())
        parts.push_back(xgrammar::Grammar::FromEBNF("root ::= " + ebnf_string(s.prefix)));
      parts.push_back(xgrammar::Grammar::FromJSONSchema(s.source, /*any_whitespace=*/false));
      if (!s.suffix.empty())
        parts.push_back(xgrammar::Grammar::FromEBNF("root ::= " + ebnf_string(s.suffix)));
      return c.CompileGrammar(xgrammar::Grammar::Concat(parts));
    };
    switch (spec.kind) {
      case Kind::json_object:
        return std::make_shared<const CompiledGrammar>(json_schema(R"({"type": "object"})"));
      case Kind::json_schema:
        if (!spec.prefix.empty() || !spec.suffix.empty())
          return std::make_shared<const CompiledGrammar>(framed_schema(spec));
        return std::make_shared<const CompiledGrammar>(json_schema(spec.source));
      case Kind::regex:
        return std::make_shared<const CompiledGrammar>(c.CompileRegex(spec.source));
      case Kind::choice: {
        std::string ebnf = "root ::= ";
        for (size_t i = 0; i < spec.choices.size(); ++i)
          ebnf += (i ? " | " : "") + ebnf_string(spec.choices[i]);
        return std::make_shared<const CompiledGrammar>(c.CompileGrammar(ebnf, "root"));
      }
      case Kind::ebnf:
        return std::make_shared<const CompiledGrammar>(c.CompileGrammar(spec.source, "root"));
    }
  } catch (const std::exception& e) {
    return Status::error(StatusCode::invalid_argument, e.what());
  }
  return Status::error(StatusCode::invalid_argument, "unknown grammar kind");
}

struct GrammarMatcher::Impl {
  Impl(std::shared_ptr<const CompiledGrammar> g, std::vector<int32_t> stops)
      : grammar(std::move(g)), matcher(grammar->grammar, std::move(stops)) {}
  std::shared_ptr<const CompiledGrammar> grammar;
  xgrammar::GrammarMatcher matcher;
  std::vector<int32_t> bitmask;   // one bit per token of the tokenizer's vocabulary, 1 = allowed
  std::vector<int32_t> row_bits;  // mask(): the bitmask over the logits row
};

GrammarMatcher::GrammarMatcher(std::shared_ptr<const CompiledGrammar> grammar,
                               std::vector<int32_t> stop_tokens)
    : impl_(std::make_unique<Impl>(std::move(grammar), std::move(stop_tokens))) {}
GrammarMatcher::~GrammarMatcher() = default;

// One bitmask for both paths (the host's -inf copy and the device draw), so that they cannot
// disagree on which tokens are allowed.
void GrammarMatcher::mask(float* logits, int vocab) {
  impl_->row_bits.resize(size_t(kernels::token_mask_words(vocab)));
  fill_bitmask(impl_->row_bits.data(), vocab);
  mask_to_allowed(logits, vocab, impl_->row_bits.data());
}

void GrammarMatcher::fill_bitmask(int32_t* words, int vocab) {
  // The compiler's vocabulary covers the row (GrammarCompiler's vocab_size); ids past it, if
  // any, are never allowed.
  const int known = impl_->grammar->grammar.GetTokenizerInfo().GetVocabSize();
  const int known_words = xgrammar::GetBitmaskSize(known);
  impl_->bitmask.assign(size_t(known_words), 0);
  int64_t shape[1] = {known_words};
  DLTensor t{};
  t.data = impl_->bitmask.data();
  t.device = DLDevice{kDLCPU, 0};
  t.ndim = 1;
  t.dtype = DLDataType{kDLInt, 32, 1};
  t.shape = shape;
  impl_->matcher.FillNextTokenBitmask(&t);
  const int64_t limit = std::min(known, vocab);  // ids from here on are never allowed
  const int64_t n = kernels::token_mask_words(vocab);
  for (int64_t w = 0; w < n; ++w) {
    const int64_t first = w * 32;
    uint32_t bits = w < known_words ? uint32_t(impl_->bitmask[size_t(w)]) : 0u;
    if (first + 32 > limit) bits &= limit <= first ? 0u : (1u << (limit - first)) - 1u;
    words[w] = int32_t(bits);
  }
}

bool GrammarMatcher::accept(int32_t token) {
  return impl_->matcher.AcceptToken(token);
}

}  // namespace invar::engine
