// Tokenizer tests: exact ids against Hugging Face tokenizers / sentencepiece (golden files from
// scripts/tokenizer-reference.py), decode round trips, streaming detokenization, and the GGUF
// loader.
#include "tokenizer/tokenizer.h"

#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "engine/tokenizer_from_gguf.h"
#include "model/gguf.h"
#include "test_paths.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/unicode.h"

namespace invar::tokenizer {
namespace {

using nlohmann::json;

json load_json(const std::string& rel) {
  std::ifstream in(testing::test_data(rel), std::ios::binary);
  EXPECT_TRUE(in) << "missing test data " << rel << " (run scripts/tokenizer-reference.py)";
  std::stringstream ss;
  ss << in.rdbuf();
  return json::parse(ss.str());
}

const Tokenizer& smollm2_hf() {
  static const Tokenizer tok = [] {
    auto t = Tokenizer::from_hf_dir(testing::test_data("tokenizer/smollm2"));
    if (!t.ok()) throw std::runtime_error(t.status().message());
    return std::move(t).value();
  }();
  return tok;
}

const Tokenizer& qwen_hf() {
  static const Tokenizer tok = [] {
    auto t = Tokenizer::from_hf_dir(testing::test_data("tokenizer/qwen3_subset"));
    if (!t.ok()) throw std::runtime_error(t.status().message());
    return std::move(t).value();
  }();
  return tok;
}

std::string show(const std::string& s) {
  return s.size() > 60 ? s.substr(0, 60) + "..." : s;
}

// Every case's ids must match exactly, and decoding them must give what Hugging Face's decode
// gives (the text itself, except for bytes a vocabulary lacks).
void expect_cases(const Tokenizer& tok, const json& cases, const std::string& what) {
  ASSERT_FALSE(cases.empty());
  for (const auto& c : cases) {
    const std::string text = c["text"].get<std::string>();
    const bool parse_special = c["parse_special"].get<bool>();
    const auto expected = c["ids"].get<std::vector<int32_t>>();
    const auto ids = tok.encode(text, /*add_bos=*/false, parse_special);
    EXPECT_EQ(ids, expected) << what << " parse_special=" << parse_special
                             << " text: " << show(text);
    EXPECT_EQ(tok.decode(ids), c["decoded"].get<std::string>()) << what << " text: " << show(text);
  }
}

// Feeding the ids one at a time: every piece is valid UTF-8 and the pieces add up to decode().
void expect_stream_matches_decode(const Tokenizer& tok, const std::vector<int32_t>& ids,
                                  bool skip_special = false) {
  StreamDecoder stream(tok, skip_special);
  std::string all;
  for (int32_t id : ids) {
    const std::string piece = stream.push(id);
    EXPECT_TRUE(is_valid_utf8(piece)) << "broken UTF-8 after id " << id;
    all += piece;
  }
  const std::string rest = stream.flush();
  EXPECT_TRUE(is_valid_utf8(rest));
  all += rest;
  EXPECT_EQ(all, tok.decode(ids, skip_special));
}

TEST(ByteAlphabet, IsABijectionOnPrintableCodePoints) {
  const auto& a = byte_alphabet();
  std::string all;
  for (int b = 0; b < 256; ++b) {
    EXPECT_EQ(a.cp_to_byte[a.byte_to_cp[b]], b);
    all += char(b);
  }
  EXPECT_EQ(a.byte_to_cp[' '], 0x120u);   // "Ġ"
  EXPECT_EQ(a.byte_to_cp['\n'], 0x10Au);  // "Ċ"
  EXPECT_EQ(a.byte_to_cp['A'], uint32_t('A'));
  EXPECT_EQ(byte_level_decode(byte_level_encode(all)), all);
}

TEST(Utf8, ReplacesMaximalInvalidSubpartsLikePython) {
  auto fix = [](std::string_view s) {
    std::string out;
    append_valid_utf8(s, out, true);
    return out;
  };
  const std::string r = "\xEF\xBF\xBD";
  EXPECT_EQ(fix("ok \xC3\xA9"), "ok \xC3\xA9");
  EXPECT_EQ(fix("\xC0\xAF"), r + r);          // overlong lead: each byte alone
  EXPECT_EQ(fix("\xED\xA0\x80"), r + r + r);  // surrogate: ED A0 not a valid pair
  EXPECT_EQ(fix("\xF0\x9F\x98"), r);          // truncated at the end: one
  EXPECT_EQ(fix("\xF0\x9F\x98"
                "a"),
            r + "a");  // truncated before ASCII: one
  EXPECT_EQ(fix("\xE2\x82\xAC"), "\xE2\x82\xAC");
  std::string held;
  EXPECT_EQ(append_valid_utf8("a\xF0\x9F", held, false), 1u);  // holds the incomplete tail
  EXPECT_EQ(held, "a");
  EXPECT_EQ(python_strip(" \t\xE3\x80\x80x y\xC2\xA0\n"), "x y");
}

TEST(Pretokenizer, SplitsLikeHuggingFaceIsolated) {
  auto pre = Pretokenizer::compile({kDigitsIndividualRegex, kGpt2Regex});
  ASSERT_TRUE(pre.ok()) << pre.status().message();
  std::vector<std::string_view> pieces;
  pre->split("Hello  world 123!", pieces);
  const std::vector<std::string_view> expected = {"Hello", " ", " world", " ", "1", "2", "3", "!"};
  EXPECT_EQ(pieces, expected);
  EXPECT_FALSE(Pretokenizer::compile({"(unclosed"}).ok());
  EXPECT_FALSE(pretokenizer_regexes_for("no-such-model").ok());
}

TEST(TokenizerSmolLM2, MatchesHuggingFaceFromTokenizerJson) {
  const auto cases = load_json("tokenizer/smollm2_expected.json")["cases"];
  expect_cases(smollm2_hf(), cases, "smollm2 tokenizer.json");
  const auto& tok = smollm2_hf();
  EXPECT_EQ(tok.vocab_size(), 49152);
  EXPECT_EQ(tok.bos_id(), 1);
  EXPECT_EQ(tok.eos_id(), 2);
  EXPECT_FALSE(tok.add_bos_default());
  EXPECT_EQ(tok.stop_ids(), (std::vector<int32_t>{2, 0}));  // <|im_end|>, <|endoftext|>
  EXPECT_NE(tok.spec().chat_template.find("SmolLM"), std::string::npos);
}

TEST(TokenizerSmolLM2, MatchesHuggingFaceFromGguf) {
  const std::string path = testing::default_model_path();
  if (path.empty()) GTEST_SKIP() << "default model not fetched (scripts/fetch-model)";
  auto gguf = model::GgufFile::open(path);
  ASSERT_TRUE(gguf.ok()) << gguf.status().message();
  auto spec = engine::tokenizer_spec_from_gguf(*gguf);
  ASSERT_TRUE(spec.ok()) << spec.status().message();
  EXPECT_EQ(spec->kind, TokenizerKind::byte_level_bpe);
  EXPECT_EQ(spec->pretokenizer_regexes,
            (std::vector<std::string>{kDigitsIndividualRegex, kGpt2Regex}));
  auto tok = Tokenizer::from_spec(std::move(spec).value());
  ASSERT_TRUE(tok.ok()) << tok.status().message();
  expect_cases(*tok, load_json("tokenizer/smollm2_expected.json")["cases"], "smollm2 gguf");
  EXPECT_EQ(tok->stop_ids(), smollm2_hf().stop_ids());
  EXPECT_EQ(tok->spec().chat_template, smollm2_hf().spec().chat_template);
  EXPECT_EQ(tok->add_bos_default(), false);
}

TEST(TokenizerQwen, MatchesHuggingFaceWithQwen2Llama3AndGpt2Regexes) {
  const auto expected = load_json("tokenizer/qwen3_subset_expected.json");
  const auto& qwen = qwen_hf();
  EXPECT_EQ(qwen.spec().pretokenizer_regexes, (std::vector<std::string>{kQwen2Regex}));
  expect_cases(qwen, expected["qwen2_regex"], "qwen2 regex");
  EXPECT_EQ(qwen.eos_id(), qwen.token_id("<|im_end|>"));
  EXPECT_FALSE(qwen.bos_id().has_value());

  TokenizerSpec llama = qwen.spec();
  llama.pretokenizer_regexes = {kLlama3Regex};
  llama.ignore_merges = true;
  auto llama_tok = Tokenizer::from_spec(std::move(llama));
  ASSERT_TRUE(llama_tok.ok()) << llama_tok.status().message();
  expect_cases(*llama_tok, expected["llama3_regex"], "llama3 regex");

  TokenizerSpec gpt2 = qwen.spec();
  gpt2.pretokenizer_regexes = {kGpt2Regex};
  auto gpt2_tok = Tokenizer::from_spec(std::move(gpt2));
  ASSERT_TRUE(gpt2_tok.ok()) << gpt2_tok.status().message();
  expect_cases(*gpt2_tok, expected["gpt2_regex"], "gpt2 regex");
}

TEST(TokenizerQwen, UserDefinedTokensMatchEvenWithoutParseSpecial) {
  const auto& qwen = qwen_hf();
  const auto think = qwen.token_id("<think>"), im_end = qwen.token_id("<|im_end|>");
  ASSERT_TRUE(think && im_end);
  const auto ids = qwen.encode("<think><|im_end|>", false, /*parse_special=*/false);
  EXPECT_EQ(ids.front(), *think);  // Qwen's <think> is an added, non-special token
  EXPECT_EQ(std::count(ids.begin(), ids.end(), *im_end), 0);
  EXPECT_EQ(qwen.decode(qwen.encode("<think>x</think><|im_end|>", false, true), true),
            "<think>x</think>");
}

TEST(StreamDecoder, PiecesAreValidUtf8AndAddUpToDecode) {
  const std::vector<std::string> texts = {
      "Emoji: 😀 👍🏽 🇺🇸 ❤️ 🧑‍💻",
      "Family 👨‍👩‍👧‍👦 and flag 🏳️‍🌈",
      "你好，世界！这是一个测试。",
      "日本語のテキスト",
      "مرحبا بالعالم",
      "<|im_start|>user\n🤖<|im_end|>"};
  for (const Tokenizer* tok : {&smollm2_hf(), &qwen_hf()}) {
    for (const auto& text : texts) {
      const auto ids = tok->encode(text, false, true);
      expect_stream_matches_decode(*tok, ids);
      expect_stream_matches_decode(*tok, ids, /*skip_special=*/true);
      EXPECT_EQ(tok->decode(ids), text);
    }
  }
  // A multi-byte character split over tokens is held, then released whole.
  const auto& tok = smollm2_hf();
  const auto ids = tok.encode("😀", false, false);
  ASSERT_GT(ids.size(), 1u);
  StreamDecoder stream(tok);
  EXPECT_EQ(stream.push(ids[0]), "");
  std::string rest;
  for (size_t i = 1; i < ids.size(); ++i) rest += stream.push(ids[i]);
  EXPECT_EQ(rest, "😀");
  // Bytes that never complete come out as one U+FFFD on flush, as decode() writes them.
  StreamDecoder partial(tok);
  EXPECT_EQ(partial.push(ids[0]), "");
  EXPECT_EQ(partial.flush(), "\xEF\xBF\xBD");
  EXPECT_EQ(tok.decode({ids[0]}), "\xEF\xBF\xBD");
}

TEST(TokenizerSmolLM2, LongPromptsAreFastAndThreadSafe) {
  const auto& tok = smollm2_hf();
  std::string text;
  const auto cases = load_json("tokenizer/smollm2_expected.json")["cases"];
  while (text.size() < 1'000'000)
    for (const auto& c : cases)
      if (c["decoded"] == c["text"]) text += c["text"].get<std::string>() + " ";
  const auto t0 = std::chrono::steady_clock::now();
  const auto ids = tok.encode(text, false, true);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("encoded %zu bytes into %zu tokens in %.3f s\n", text.size(), ids.size(), seconds);
  EXPECT_LT(seconds, 10.0);
  EXPECT_EQ(tok.decode(ids), text);
  std::vector<std::vector<int32_t>> results(4);
  std::vector<std::thread> threads;
  for (auto& r : results)
    threads.emplace_back([&] { r = tok.encode(text.substr(0, 200'000), false, true); });
  for (auto& t : threads) t.join();
  for (const auto& r : results) EXPECT_EQ(r, results[0]);
}

// ---- sentencepiece ----

TEST(TokenizerSentencePiece, MatchesSentencepieceFromGguf) {
  auto gguf = model::GgufFile::open(testing::test_data("tokenizer/spm_tiny.gguf"));
  ASSERT_TRUE(gguf.ok()) << gguf.status().message();
  auto spec = engine::tokenizer_spec_from_gguf(*gguf);
  ASSERT_TRUE(spec.ok()) << spec.status().message();
  EXPECT_EQ(spec->kind, TokenizerKind::sentencepiece_bpe);
  EXPECT_TRUE(spec->add_bos);
  EXPECT_TRUE(spec->add_space_prefix);
  auto tok = Tokenizer::from_spec(std::move(spec).value());
  ASSERT_TRUE(tok.ok()) << tok.status().message();
  EXPECT_EQ(tok->stop_ids(), (std::vector<int32_t>{2}));
  EXPECT_NE(tok->spec().chat_template.find("<|user|>"), std::string::npos);
  const json expected = load_json("tokenizer/spm_tiny_expected.json");
  for (const auto& c : expected["cases"]) {
    const std::string text = c["text"].get<std::string>();
    const auto ids = tok->encode(text, false, false);
    EXPECT_EQ(ids, c["ids"].get<std::vector<int32_t>>()) << "text: " << text;
    EXPECT_EQ(tok->decode(ids), text);
    expect_stream_matches_decode(*tok, ids);
    auto with_bos = tok->encode(text, true, false);
    ASSERT_FALSE(with_bos.empty());
    EXPECT_EQ(with_bos[0], 1);
    EXPECT_EQ(tok->decode(with_bos, /*skip_special=*/true), text);
  }
}

TEST(TokenizerSentencePiece, MatchesSentencepieceFromLlamaStyleTokenizerJson) {
  auto tok = Tokenizer::from_hf_dir(testing::test_data("tokenizer/spm_tiny_hf"));
  ASSERT_TRUE(tok.ok()) << tok.status().message();
  EXPECT_EQ(tok->spec().kind, TokenizerKind::sentencepiece_bpe);
  EXPECT_TRUE(tok->add_bos_default());  // from the TemplateProcessing post-processor
  EXPECT_TRUE(tok->spec().add_space_prefix);
  EXPECT_EQ(tok->bos_id(), 1);
  const json expected = load_json("tokenizer/spm_tiny_expected.json");
  for (const auto& c : expected["cases"]) {
    const std::string text = c["text"].get<std::string>();
    const auto ids = tok->encode(text, false, false);
    EXPECT_EQ(ids, c["ids"].get<std::vector<int32_t>>()) << "text: " << text;
    EXPECT_EQ(tok->decode(ids), text);
  }
}

// A hand-built vocabulary: merges by score, byte fallback, special tokens, prefix space.
Tokenizer tiny_spm() {
  TokenizerSpec s;
  s.kind = TokenizerKind::sentencepiece_bpe;
  auto add = [&](std::string text, float score, int32_t type) {
    s.tokens.push_back(std::move(text));
    s.scores.push_back(score);
    s.token_types.push_back(type);
    return int32_t(s.tokens.size()) - 1;
  };
  add("<unk>", 0, kTokenUnknown);
  add("<s>", 0, kTokenControl);
  add("</s>", 0, kTokenControl);
  for (int b = 0; b < 256; ++b) {
    char buf[8];
    std::snprintf(buf, sizeof(buf), "<0x%02X>", b);
    add(buf, 0, kTokenByte);
  }
  for (const char* c : {"\xE2\x96\x81", "h", "e", "l", "o", "w", "r", "d"})
    add(c, -100, kTokenNormal);
  add("\xE2\x96\x81h", -1, kTokenNormal);
  add("ll", -2, kTokenNormal);
  add("\xE2\x96\x81he", -3, kTokenNormal);
  add("\xE2\x96\x81hell", -4, kTokenNormal);
  add("\xE2\x96\x81hello", -5, kTokenNormal);
  add("\xE2\x96\x81w", -6, kTokenNormal);
  add("or", -7, kTokenNormal);
  add("\xE2\x96\x81wor", -8, kTokenNormal);
  add("ld", -9, kTokenNormal);
  add("\xE2\x96\x81world", -10, kTokenNormal);
  s.bos_id = 1;
  s.eos_id = 2;
  s.unk_id = 0;
  s.add_bos = true;
  s.add_space_prefix = true;
  auto tok = Tokenizer::from_spec(std::move(s));
  EXPECT_TRUE(tok.ok()) << tok.status().message();
  return std::move(tok).value();
}

TEST(TokenizerSentencePiece, HandBuiltVocabulary) {
  const Tokenizer tok = tiny_spm();
  const auto id = [&](const char* t) { return *tok.token_id(t); };
  const int32_t hello = id("\xE2\x96\x81hello"), world = id("\xE2\x96\x81world");
  EXPECT_EQ(tok.encode("hello world", false, false), (std::vector<int32_t>{hello, world}));
  EXPECT_EQ(tok.encode("hello world", true, false), (std::vector<int32_t>{1, hello, world}));
  EXPECT_EQ(tok.decode({1, hello, world}), "<s> hello world");
  EXPECT_EQ(tok.decode({1, hello, world}, true), "hello world");
  EXPECT_EQ(tok.decode({hello, world}), "hello world");  // the prefix space is dropped
  // Not in the vocabulary: byte fallback, UTF-8 bytes in order.
  EXPECT_EQ(tok.encode("\xC3\xA9", false, false),
            (std::vector<int32_t>{id("\xE2\x96\x81"), id("<0xC3>"), id("<0xA9>")}));
  EXPECT_EQ(tok.decode(tok.encode("h\xC3\xA9llo\n", false, false)), "h\xC3\xA9llo\n");
  // Special tokens in text only with parse_special; each one restarts the prefix space.
  EXPECT_EQ(tok.encode("hello</s>world", false, true), (std::vector<int32_t>{hello, 2, world}));
  const auto raw = tok.encode("</s>", false, false);
  EXPECT_EQ(std::count(raw.begin(), raw.end(), 2), 0);
  EXPECT_EQ(tok.decode(raw), "</s>");
  // Streaming: the leading space goes, bytes of one character are held together.
  const auto ids = tok.encode("hello \xF0\x9F\x98\x80 world", false, false);
  expect_stream_matches_decode(tok, ids);
  StreamDecoder stream(tok);
  EXPECT_EQ(stream.push(hello), "hello");
  StreamDecoder continuing(tok, false, /*at_text_start=*/false);
  EXPECT_EQ(continuing.push(hello), " hello");
}

TEST(TokenizerErrors, SayWhatIsWrong) {
  auto missing = Tokenizer::from_hf_dir("/nonexistent/dir");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("tokenizer.json"), std::string::npos);
  TokenizerSpec bad;
  bad.tokens = {"a", "b"};
  bad.merges = {"a c"};
  auto t = Tokenizer::from_spec(bad);
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("merge 0"), std::string::npos);
  bad.merges.clear();
  bad.eos_id = 7;
  EXPECT_FALSE(Tokenizer::from_spec(bad).ok());
}

}  // namespace
}  // namespace invar::tokenizer
