// XGrammar behind engine/grammar.h. The vocabulary is handed over as each token's raw bytes
// (XGrammar's RAW vocab type), so byte-level and SentencePiece tokenizers need no decoding rules
// of their own; control tokens are given as "" (XGrammar never allows those inside a grammar)
// and the model's end tokens as its stop tokens.
#include "engine/grammar.h"

#include <dlpack/dlpack.h>
#include <fmt/format.h>
#include <xgrammar/xgrammar.h>

#include <cmath>
#include <limits>
#include <mutex>
#include <optional>

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

}  // namespace

struct GrammarCompiler::Impl {
  Impl(const tokenizer::Tokenizer& t, int v) : tok(t), vocab_size(v) {}
  const tokenizer::Tokenizer& tok;
  int vocab_size;
  std::mutex mu;  // guards the lazy construction only; xgrammar's compiler is thread-safe
  std::optional<xgrammar::GrammarCompiler> compiler;

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
      compiler.emplace(info, /*max_threads=*/2, /*cache_enabled=*/true);
    }
    return *compiler;
  }
};

GrammarCompiler::GrammarCompiler(const tokenizer::Tokenizer& tok, int vocab_size)
    : impl_(std::make_unique<Impl>(tok, vocab_size)) {}
GrammarCompiler::~GrammarCompiler() = default;

Result<std::shared_ptr<const CompiledGrammar>> GrammarCompiler::compile(const GrammarSpec& spec) {
  using Kind = GrammarSpec::Kind;
  try {
    xgrammar::GrammarCompiler& c = impl_->get();
    // Compact JSON (no free whitespace between tokens, ", " and ": " as separators), as vLLM
    // with disable_any_whitespace: a model free to add whitespace may never stop adding it.
    auto json_schema = [&](const std::string& schema) {
      return c.CompileJSONSchema(schema, /*any_whitespace=*/false);
    };
    switch (spec.kind) {
      case Kind::json_object:
        return std::make_shared<const CompiledGrammar>(json_schema(R"({"type": "object"})"));
      case Kind::json_schema:
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
  std::vector<int32_t> bitmask;  // one bit per token, 1 = allowed
};

GrammarMatcher::GrammarMatcher(std::shared_ptr<const CompiledGrammar> grammar,
                               std::vector<int32_t> stop_tokens)
    : impl_(std::make_unique<Impl>(std::move(grammar), std::move(stop_tokens))) {}
GrammarMatcher::~GrammarMatcher() = default;

void GrammarMatcher::mask(float* logits, int vocab) {
  // The compiler's vocabulary covers the row (GrammarCompiler's vocab_size); ids past it, if
  // any, are never allowed.
  const int known = impl_->grammar->grammar.GetTokenizerInfo().GetVocabSize();
  const int words = xgrammar::GetBitmaskSize(known);
  impl_->bitmask.assign(size_t(words), 0);
  int64_t shape[1] = {words};
  DLTensor t{};
  t.data = impl_->bitmask.data();
  t.device = DLDevice{kDLCPU, 0};
  t.ndim = 1;
  t.dtype = DLDataType{kDLInt, 32, 1};
  t.shape = shape;
  impl_->matcher.FillNextTokenBitmask(&t);
  for (int i = 0; i < vocab; ++i)
    if (i >= known || !((uint32_t(impl_->bitmask[size_t(i / 32)]) >> (i % 32)) & 1u))
      logits[i] = -std::numeric_limits<float>::infinity();
}

bool GrammarMatcher::accept(int32_t token) {
  return impl_->matcher.AcceptToken(token);
}

}  // namespace invar::engine
