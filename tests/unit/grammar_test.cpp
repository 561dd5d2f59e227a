// Structured output (src/engine/grammar.h) on SmolLM2's vocabulary: the mask leaves every
// allowed logit's bits as they were and sets the others to -inf; the matcher follows choices,
// regexes and JSON schemas token by token, and allows only the stop tokens once complete; bad
// grammars are errors. Also the server's parsing of the structured-output fields.
#include "engine/grammar.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "server/completion_request.h"
#include "test_paths.h"

namespace invar::engine {
namespace {

const tokenizer::Tokenizer& smollm2() {
  static auto tok = tokenizer::Tokenizer::from_hf_dir(testing::test_data("tokenizer/smollm2"));
  EXPECT_TRUE(tok.ok()) << tok.status().message();
  return *tok;
}

GrammarCompiler& compiler() {
  static GrammarCompiler c(smollm2(), smollm2().vocab_size());
  return c;
}

std::shared_ptr<const CompiledGrammar> compile(GrammarSpec spec) {
  auto g = compiler().compile(spec);
  EXPECT_TRUE(g.ok()) << g.status().message();
  return g.ok() ? *g : nullptr;
}

std::vector<float> random_row(int vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 3.0f);
  std::vector<float> row(static_cast<size_t>(vocab));
  for (float& x : row) x = d(rng);
  return row;
}

// The token ids the matcher allows next, read off a masked row.
std::vector<int32_t> allowed(GrammarMatcher& m) {
  const int vocab = smollm2().vocab_size();
  std::vector<float> row(static_cast<size_t>(vocab), 0.0f);
  m.mask(row.data(), vocab);
  std::vector<int32_t> ids;
  for (int i = 0; i < vocab; ++i)
    if (!std::isinf(row[size_t(i)])) ids.push_back(i);
  return ids;
}

std::vector<int32_t> encode(const std::string& s) {
  return smollm2().encode(s, false, false);
}

void accept_all(GrammarMatcher& m, const std::string& text) {
  for (int32_t t : encode(text)) ASSERT_TRUE(m.accept(t)) << "token " << t << " of " << text;
}

std::vector<int32_t> sorted_stops() {
  std::vector<int32_t> s = smollm2().stop_ids();
  std::sort(s.begin(), s.end());
  return s;
}

TEST(Grammar, MaskKeepsTheBitsOfEveryAllowedLogit) {
  GrammarMatcher m(compile({GrammarSpec::Kind::json_object, {}, {}, {}, {}}), smollm2().stop_ids());
  const int vocab = smollm2().vocab_size();
  const std::vector<float> raw = random_row(vocab, 7);
  std::vector<float> masked = raw;
  m.mask(masked.data(), vocab);
  int kept = 0;
  for (int i = 0; i < vocab; ++i) {
    const float x = masked[size_t(i)];
    if (std::isinf(x) && x < 0) continue;
    ++kept;
    EXPECT_EQ(std::memcmp(&x, &raw[size_t(i)], sizeof x), 0) << "logit " << i << " changed";
  }
  // A JSON object starts with "{" (compact JSON: no leading whitespace).
  EXPECT_GT(kept, 0);
  EXPECT_LT(kept, vocab / 10);
  const int32_t brace = encode("{")[0];
  EXPECT_FALSE(std::isinf(masked[size_t(brace)]));
  EXPECT_TRUE(std::isinf(masked[size_t(encode("Hello")[0])]));
}

TEST(Grammar, ChoiceAllowsThePrefixesThenOnlyTheStopTokens) {
  GrammarMatcher m(compile({GrammarSpec::Kind::choice, {}, {"Paris", "London"}, {}, {}}),
                   smollm2().stop_ids());
  const auto first = allowed(m);
  for (const char* c : {"Paris", "London"})
    EXPECT_TRUE(std::binary_search(first.begin(), first.end(), encode(c)[0])) << c;
  EXPECT_FALSE(std::binary_search(first.begin(), first.end(), encode("Berlin")[0]));
  EXPECT_FALSE(m.accept(encode("Berlin")[0]));  // refused, and the state is unchanged
  accept_all(m, "London");
  EXPECT_EQ(allowed(m), sorted_stops());
}

TEST(Grammar, RegexAndSchemaFollowTheirTokens) {
  {
    GrammarMatcher m(compile({GrammarSpec::Kind::regex, "[0-9]{3}-[a-z]+", {}, {}, {}}),
                     smollm2().stop_ids());
    accept_all(m, "123-");
    EXPECT_FALSE(m.accept(encode("7")[0]));
    accept_all(m, "abc");
    const auto next = allowed(m);  // more letters or the end
    EXPECT_TRUE(std::binary_search(next.begin(), next.end(), smollm2().stop_ids()[0]));
  }
  {
    const std::string schema =
        R"({"type": "object", "properties": {"name": {"type": "string"},
            "age": {"type": "integer"}}, "required": ["name", "age"]})";
    GrammarMatcher m(compile({GrammarSpec::Kind::json_schema, schema, {}, {}, {}}),
                     smollm2().stop_ids());
    EXPECT_FALSE(m.accept(encode("[")[0]));
    accept_all(m, R"({"name": "Ada", "age": 36})");
    EXPECT_EQ(allowed(m), sorted_stops());
  }
}

// The packed bitmask (what the CUDA sampler takes) allows exactly the tokens mask() leaves
// finite, in every state of a JSON schema, over a logits row longer than the tokenizer's
// vocabulary and not a multiple of 32: the extra ids and the bits past the row are 0.
TEST(Grammar, BitmaskAllowsExactlyWhatTheMaskKeeps) {
  const int known = smollm2().vocab_size();
  const int vocab = known + 45;  // padded logits rows, as some models have
  GrammarCompiler padded(smollm2(), vocab);
  auto g = padded.compile({GrammarSpec::Kind::json_schema,
                           R"({"type": "object", "properties": {"n": {"type": "integer"}},
                               "required": ["n"]})",
                           {},
                           {},
                           {}});
  ASSERT_TRUE(g.ok()) << g.status().message();
  GrammarMatcher m(*g, smollm2().stop_ids());
  const std::vector<int32_t> text = encode(R"({"n": 42})");
  const size_t words = size_t(vocab + 31) / 32;
  for (size_t step = 0; step <= text.size(); ++step) {
    // A guard word past the end: fill_bitmask writes ceil(vocab / 32) words, no more.
    std::vector<int32_t> bits(words + 1, 0x5a5a5a5a);
    m.fill_bitmask(bits.data(), vocab);
    EXPECT_EQ(bits[words], 0x5a5a5a5a) << "step " << step;
    std::vector<float> row = random_row(vocab, uint32_t(step));
    m.mask(row.data(), vocab);
    int allowed_count = 0;
    for (int i = 0; i < int(words) * 32; ++i) {
      const bool bit = (uint32_t(bits[size_t(i / 32)]) >> (i % 32)) & 1u;
      allowed_count += bit;
      if (i >= known) {
        EXPECT_FALSE(bit) << "id " << i << " is past the tokenizer's vocabulary";
      } else {
        EXPECT_EQ(bit, !std::isinf(row[size_t(i)])) << "step " << step << " token " << i;
      }
    }
    EXPECT_GT(allowed_count, 0) << "step " << step;
    if (step < text.size()) {
      ASSERT_TRUE(m.accept(text[step])) << "step " << step;
    }
  }
}

TEST(Grammar, BadGrammarsAreErrors) {
  for (GrammarSpec spec : {GrammarSpec{GrammarSpec::Kind::regex, "(ab", {}, {}, {}},
                           GrammarSpec{GrammarSpec::Kind::ebnf, "root ::= (", {}, {}, {}},
                           GrammarSpec{GrammarSpec::Kind::json_schema, "{not json", {}, {}, {}}}) {
    auto g = compiler().compile(spec);
    EXPECT_FALSE(g.ok()) << spec.source;
    if (!g.ok()) {
      EXPECT_EQ(g.status().code(), StatusCode::invalid_argument);
      EXPECT_FALSE(g.status().message().empty());
    }
  }
}

// The compile cache keeps the `cache_entries` most recently used grammars: a repeat is served
// from it (the same compiled object), the least recently used one is dropped for a new one.
TEST(Grammar, CacheIsBoundedAndDropsTheLeastRecentlyUsed) {
  GrammarCompiler c(smollm2(), smollm2().vocab_size(), /*cache_entries=*/2);
  auto get = [&c](const char* regex) {
    auto g = c.compile({GrammarSpec::Kind::regex, regex, {}, {}, {}});
    EXPECT_TRUE(g.ok());
    return g.ok() ? *g : nullptr;
  };
  auto a = get("a+");
  auto b = get("b+");
  EXPECT_EQ(get("a+"), a);  // a hit: a is now the most recent
  auto c1 = get("c+");      // evicts b
  GrammarCompiler::CacheStats s = c.cache_stats();
  EXPECT_EQ(s.entries, 2u);
  EXPECT_EQ(s.hits, 1u);
  EXPECT_EQ(s.misses, 3u);
  EXPECT_EQ(get("c+"), c1);
  EXPECT_EQ(get("a+"), a);
  auto b2 = get("b+");  // compiled again, evicting c
  EXPECT_NE(b2, b);
  EXPECT_EQ(c.cache_stats().entries, 2u);
  EXPECT_EQ(c.cache_stats().misses, 4u);
  EXPECT_NE(get("c+"), c1);
  // A dropped grammar stays usable by whoever holds it.
  GrammarMatcher m(b, smollm2().stop_ids());
  for (int32_t id : encode("bbb")) EXPECT_TRUE(m.accept(id));
  // Specs differing in any field are different entries.
  GrammarSpec framed{GrammarSpec::Kind::json_schema, R"({"type": "object"})", {}, "<x>", ""};
  GrammarSpec plain{GrammarSpec::Kind::json_schema, R"({"type": "object"})", {}, "", ""};
  auto f = c.compile(framed);
  auto p = c.compile(plain);
  ASSERT_TRUE(f.ok() && p.ok()) << f.status().message();
  EXPECT_NE(*f, *p);
  GrammarMatcher framed_matcher(*f, smollm2().stop_ids());
  for (int32_t id : encode("<x>{}")) EXPECT_TRUE(framed_matcher.accept(id));
}

TEST(Grammar, ServerFieldsBecomeAGrammarOrA400NamingTheField) {
  server::RequestLimits limits;
  limits.served_model = "smol";
  auto parse = [&](server::Endpoint e, const std::string& body, server::CompletionRequest* r) {
    return server::parse_completion_request(e, body, smollm2(), limits, r, &compiler());
  };
  server::CompletionRequest r;
  for (const char* body : {R"({"prompt": "x", "guided_choice": ["a", "b"]})",
                           R"({"prompt": "x", "guided_regex": "a+"})",
                           R"({"prompt": "x", "guided_json": {"type": "object"}})",
                           R"({"prompt": "x", "guided_json": "{\"type\": \"string\"}"})",
                           R"({"prompt": "x", "guided_grammar": "root ::= \"yes\" | \"no\""})",
                           R"({"prompt": "x", "response_format": {"type": "json_object"}})",
                           R"({"prompt": "x", "response_format": {"type": "json_schema",
            "json_schema": {"name": "n", "schema": {"type": "object"}}}})"}) {
    auto e = parse(server::Endpoint::completions, body, &r);
    EXPECT_FALSE(e) << body << ": " << e->message;
    EXPECT_NE(r.params.grammar, nullptr) << body;
  }
  EXPECT_FALSE(parse(server::Endpoint::chat,
                     R"({"messages": [{"role": "user", "content": "hi"}],
                         "response_format": {"type": "text"}})",
                     &r));
  EXPECT_EQ(r.params.grammar, nullptr);

  struct Bad {
    const char* body;
    const char* param;
  };
  for (Bad b :
       {Bad{R"({"prompt": "x", "guided_regex": "(a"})", "guided_regex"},
        Bad{R"({"prompt": "x", "guided_choice": []})", "guided_choice"},
        Bad{R"({"prompt": "x", "guided_choice": ["a", 3]})", "guided_choice"},
        Bad{R"({"prompt": "x", "guided_json": 5})", "guided_json"},
        Bad{R"({"prompt": "x", "guided_regex": "a", "guided_choice": ["a"]})", "guided_choice"},
        Bad{R"({"prompt": "x", "response_format": {"type": "xml"}})", "response_format"},
        Bad{R"({"prompt": "x", "response_format": {"type": "json_schema"}})", "response_format"},
        Bad{R"({"prompt": "x", "guided_whitespace_pattern": " "})", "guided_whitespace_pattern"}}) {
    auto e = parse(server::Endpoint::completions, b.body, &r);
    ASSERT_TRUE(e) << b.body;
    EXPECT_EQ(e->status, 400);
    EXPECT_EQ(e->param, b.param) << b.body << ": " << e->message;
  }
}

}  // namespace
}  // namespace invar::engine
