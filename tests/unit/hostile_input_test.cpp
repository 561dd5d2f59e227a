// Inputs that crashed invar (found by the fuzz targets of tests/fuzz, or built to reach the
// same flaw elsewhere), each now refused with a message naming what is wrong. The crash inputs
// small enough to keep are also replayed by fuzz_replay_test (tests/fuzz/regressions).
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>

#include "core/json_depth.h"
#include "model/config_parse.h"
#include "model/safetensors.h"
#include "model/weights.h"
#include "server/completion_request.h"
#include "test_paths.h"
#include "tokenizer/tokenizer.h"
#include "unit/gguf_writer.h"

namespace invar {
namespace {

namespace fs = std::filesystem;

std::string deep(int levels) {
  return std::string(size_t(levels), '[') + std::string(size_t(levels), ']');
}

std::string temp_dir(const std::string& name) {
  fs::path p = fs::path(::testing::TempDir()) / ("invar_hostile_" + name);
  fs::remove_all(p);
  fs::create_directories(p);
  return p.string();
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

template <typename T>
void expect_error(const Result<T>& r, std::vector<std::string> parts) {
  ASSERT_FALSE(r.ok());
  for (const auto& p : parts) {
    EXPECT_NE(r.status().message().find(p), std::string::npos)
        << "missing '" << p << "' in: " << r.status().message();
  }
}

TEST(JsonDepth, CountsBracketsOutsideStrings) {
  EXPECT_TRUE(json_depth_within("", 0));
  EXPECT_TRUE(json_depth_within("1", 0));
  EXPECT_FALSE(json_depth_within("[]", 0));
  EXPECT_TRUE(json_depth_within(R"({"a": [1, {"b": []}]})", 4));
  EXPECT_FALSE(json_depth_within(R"({"a": [1, {"b": []}]})", 3));
  EXPECT_TRUE(json_depth_within(R"(["[[[[", "\"[[[", "\\"])", 1));  // brackets in strings
  EXPECT_TRUE(json_depth_within("[][][][]", 1));                    // siblings, not nesting
  EXPECT_TRUE(json_depth_within("]]]][", 1));                       // malformed: the parser's job
  EXPECT_TRUE(json_depth_within(deep(kMaxJsonDepth)));
  EXPECT_FALSE(json_depth_within(deep(kMaxJsonDepth + 1)));
}

// ---- request bodies (fuzz target `request`, and the bad-input matrix) ----

const tokenizer::Tokenizer& smollm2() {
  static auto tok = tokenizer::Tokenizer::from_hf_dir(testing::test_data("tokenizer/smollm2"));
  EXPECT_TRUE(tok.ok()) << tok.status().message();
  return *tok;
}

std::optional<server::ApiError> parse(server::Endpoint endpoint, const std::string& body) {
  server::RequestLimits limits;
  limits.served_model = "smol";
  limits.max_context = 2048;
  server::CompletionRequest r;
  return server::parse_completion_request(endpoint, body, smollm2(), limits, &r);
}

TEST(HostileRequest, NumberPastADoubleIsMalformedJsonNotAnInternalError) {
  // nlohmann throws out_of_range (not parse_error) for it: the server answered 500.
  for (const char* body : {R"({"prompt": "x", "temperature": 1e400})", "8e388"}) {
    SCOPED_TRACE(body);
    auto e = parse(server::Endpoint::completions, body);
    ASSERT_TRUE(e);
    EXPECT_EQ(e->status, 400);
    EXPECT_NE(e->message.find("not valid JSON"), std::string::npos) << e->message;
    EXPECT_NE(e->message.find("number overflow"), std::string::npos) << e->message;
  }
}

TEST(HostileRequest, DeepNestingIsRefusedBeforeParsing) {
  // Copying chat_template_kwargs (and comparing best_of with n) recursed once per level: a
  // request of a million levels overflowed the stack of the server's network thread.
  const std::string messages = R"("messages": [{"role": "user", "content": "hi"}])";
  for (const std::string& body :
       {"{" + messages + R"(, "chat_template_kwargs": {"a": )" + deep(1'000'000) + "}}",
        R"({"prompt": "x", "best_of": )" + deep(200'000) + R"(, "n": )" + deep(200'000) + "}",
        "{" + messages + R"(, "chat_template_kwargs": {"a": )" + deep(kMaxJsonDepth) + "}}"}) {
    auto e = parse(server::Endpoint::chat, body);
    ASSERT_TRUE(e);
    EXPECT_EQ(e->status, 400);
    EXPECT_NE(e->message.find("more than 128 levels deep"), std::string::npos) << e->message;
  }
  // A little less deep is parsed as usual (and refused for what it is).
  auto e = parse(server::Endpoint::chat, "{" + messages + R"(, "chat_template_kwargs": {"a": )" +
                                             deep(kMaxJsonDepth - 2) + "}}");
  EXPECT_FALSE(e) << e->message;
}

// ---- Hugging Face files (fuzz target `hf_files`) ----

TEST(HostileFiles, DeepJsonInEveryHuggingFaceFileIsAnError) {
  const std::string d = deep(1'000'000);  // each of these overflowed the stack
  expect_error(model::parse_hf_config(R"({"architectures": ["LlamaForCausalLM"], "x": )" + d + "}",
                                      "config.json"),
               {"config.json", "levels deep"});

  const std::string st_dir = temp_dir("deep_safetensors");
  const std::string header = R"({"t": )" + d + "}";
  testing::Bytes b;
  b.put<uint64_t>(header.size());
  b.b.insert(b.b.end(), header.begin(), header.end());
  testing::write_bytes(st_dir + "/model.safetensors", b.b);
  expect_error(model::SafetensorsFile::open(st_dir + "/model.safetensors"),
               {"model.safetensors", "header", "levels deep"});

  const std::string index_dir = temp_dir("deep_index");
  write_file(index_dir + "/model.safetensors.index.json", R"({"weight_map": {"a": )" + d + "}}");
  expect_error(model::SafetensorsSet::open_dir(index_dir),
               {"model.safetensors.index.json", "levels deep"});

  const std::string tok_dir = temp_dir("deep_tokenizer");
  write_file(tok_dir + "/tokenizer.json",
             R"({"model": {"type": "BPE", "vocab": {"a": 0}}, "normalizer": {"type": "Sequence", )"
             R"("normalizers": )" +
                 d + "}}");
  expect_error(tokenizer::Tokenizer::from_hf_dir(tok_dir), {"tokenizer.json", "levels deep"});
}

TEST(HostileFiles, TokenizerJsonValuesOfTheWrongTypeAreErrors) {
  // nlohmann's value() and get<>() throw on a wrong type; nothing caught it and `invar serve`
  // ended in std::terminate.
  const std::string vocab = R"("vocab": {"a": 0, "b": 1, "ab": 2})";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"3", ""},
      {R"({"model": 5})", ""},
      {R"({"model": {"type": 5, )" + vocab + "}}", ""},
      {R"({"model": {"type": "BPE", )" + vocab + R"(}, "normalizer": {"type": []}})", ""},
      {R"({"model": {"type": "BPE", )" + vocab +
           R"(}, "pre_tokenizer": {"type": "Split", "behavior": "Isolated", )"
           R"("pattern": {"Regex": 7}}})",
       ""},
      {R"({"model": {"type": "BPE", "byte_fallback": true, )" + vocab +
           R"(}, "added_tokens": [{"id": 3, "content": 1}]})",
       ""},
      {R"({"model": {"type": "BPE", "byte_fallback": true, )" + vocab + "}}",
       R"({"chat_template": [{"name": "default", "template": 5}]})"},
      {R"({"model": {"type": "BPE", "byte_fallback": true, )" + vocab + "}}",
       R"({"chat_template": [1, 2]})"},
  };
  for (const auto& [tokenizer_json, config_json] : cases) {
    SCOPED_TRACE(tokenizer_json + " | " + config_json);
    const std::string dir = temp_dir("wrong_types");
    write_file(dir + "/tokenizer.json", tokenizer_json);
    if (!config_json.empty()) write_file(dir + "/tokenizer_config.json", config_json);
    expect_error(tokenizer::Tokenizer::from_hf_dir(dir), {dir, "wrong type"});
  }
}

TEST(HostileFiles, TokenIdsThatAreNotNonNegativeIntegersAreErrors) {
  // An added token's id of 1.2e22 was converted to int64 by nlohmann's value(): undefined
  // behaviour (UBSan in the hf_files fuzz target). Ids must be non-negative integers.
  const std::string vocab = R"("vocab": {"a": 0, "b": 1, "ab": 2})";
  for (const std::string id : {"11844674407370955161603", "1.5", "-4", "\"x\"", "null"}) {
    SCOPED_TRACE(id);
    const std::string dir = temp_dir("token_ids");
    write_file(dir + "/tokenizer.json", R"({"model": {"type": "BPE", "byte_fallback": true, )" +
                                            vocab + R"(}, "added_tokens": [{"id": )" + id +
                                            R"(, "content": "<s>"}]})");
    expect_error(tokenizer::Tokenizer::from_hf_dir(dir), {dir, "has no valid id"});
    write_file(dir + "/tokenizer.json", R"({"model": {"type": "BPE", "byte_fallback": true, )"
                                        R"("vocab": {"a": )" +
                                            id + "}}}");
    expect_error(tokenizer::Tokenizer::from_hf_dir(dir), {dir, "has no valid id"});
  }
}

TEST(HostileFiles, ByteTokenThatIsNotHexIsAnOrdinaryToken) {
  // std::stoi threw on "<0xx6>" typed as a byte token (from tokenizer.json or GGUF).
  const std::string dir = temp_dir("byte_token");
  write_file(dir + "/tokenizer.json",
             R"({"model": {"type": "BPE", "byte_fallback": true, "merges": [],)"
             R"( "vocab": {"<0xx6>": 0, "<0x41>": 1, "a": 2}}})");
  auto hf = tokenizer::Tokenizer::from_hf_dir(dir);
  ASSERT_TRUE(hf.ok()) << hf.status().message();
  EXPECT_EQ(hf->token_bytes(0), "<0xx6>");
  EXPECT_EQ(hf->token_bytes(1), "A");

  tokenizer::TokenizerSpec spec;  // as a GGUF file would give it: typed byte by the file
  spec.kind = tokenizer::TokenizerKind::sentencepiece_bpe;
  spec.tokens = {"<0xZZ>", "<0x4", "<0x41>", "a"};
  spec.token_types = {tokenizer::kTokenByte, tokenizer::kTokenByte, tokenizer::kTokenByte,
                      tokenizer::kTokenNormal};
  auto gguf = tokenizer::Tokenizer::from_spec(spec);
  ASSERT_TRUE(gguf.ok()) << gguf.status().message();
  EXPECT_EQ(gguf->token_bytes(0), "<0xZZ>");
  EXPECT_EQ(gguf->token_bytes(1), "<0x4");
  EXPECT_EQ(gguf->token_bytes(2), "A");
  EXPECT_EQ(gguf->encode("aA", false, false), (std::vector<int32_t>{3, 2}));
}

TEST(HostileFiles, PreTokenizerRegexMatchingEmptyAtTheEnd) {
  // A Split regex that matches the empty string at the end of a piece ("$") read the byte past
  // the piece (past the buffer, for the last one) to step over a character that is not there.
  const std::string dir = temp_dir("regex_end");
  write_file(dir + "/tokenizer.json",
             R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]},)"
             R"( "pre_tokenizer": {"type": "Sequence", "pretokenizers": [)"
             R"({"type": "Split", "pattern": {"Regex": "$"}, "behavior": "Isolated"},)"
             R"({"type": "ByteLevel", "use_regex": false}]}})");
  auto tok = tokenizer::Tokenizer::from_hf_dir(dir);
  ASSERT_TRUE(tok.ok()) << tok.status().message();
  auto text = std::make_unique<char[]>(3);  // exactly sized: ASan sees a read past it
  std::memcpy(text.get(), "abb", 3);
  EXPECT_EQ(tok->encode(std::string_view(text.get(), 3), false, false),
            (std::vector<int32_t>{2, 1}));
}

// ---- GGUF files (fuzz target `gguf`) ----

TEST(HostileFiles, GgufLayerCountBeyondItsTensorsIsAnErrorNotAnAllocation) {
  // block_count 2^31-1 with one layer of tensors: the loader sized the layer table up front
  // (1.6 TB) before finding blk.1 missing.
  std::ifstream in(fs::path(INVAR_FUZZ_DIR) / "corpus/gguf/llama_q4_0_f32", std::ios::binary);
  std::string bytes{std::istreambuf_iterator<char>(in), {}};
  const std::string key = "llama.block_count";
  const size_t at = bytes.find(key);
  ASSERT_NE(at, std::string::npos);
  const size_t value = at + key.size() + 4;  // after the u32 type
  ASSERT_EQ(bytes.substr(value, 4), std::string("\x01\x00\x00\x00", 4));
  bytes.replace(value, 4, std::string("\xff\xff\xff\x7f", 4));
  const std::string path = temp_dir("gguf_layers") + "/model.gguf";
  write_file(path, bytes);
  expect_error(model::load_model(path, {}), {path, "tensor 'blk.1.attn_norm.weight' is missing"});
}

}  // namespace
}  // namespace invar
