// safetensors reader: single files, sharded sets, and malformed headers and offsets.
#include "model/safetensors.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "test_paths.h"
#include "unit/gguf_writer.h"

namespace invar::model {
namespace {

namespace fs = std::filesystem;

std::string temp_dir(const std::string& name) {
  fs::path p = fs::path(::testing::TempDir()) / ("invar_st_" + name);
  fs::remove_all(p);
  fs::create_directories(p);
  return p.string();
}

// A safetensors file from a header JSON text and a data blob.
std::vector<uint8_t> st_bytes(const std::string& header, const std::vector<uint8_t>& data) {
  testing::Bytes b;
  b.put<uint64_t>(header.size());
  b.b.insert(b.b.end(), header.begin(), header.end());
  b.raw(data);
  return b.b;
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

void expect_error(const Status& st, std::vector<std::string> parts) {
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.message().find('\n'), std::string::npos) << st.message();
  for (const auto& p : parts) {
    EXPECT_NE(st.message().find(p), std::string::npos)
        << "missing '" << p << "' in: " << st.message();
  }
}

template <typename T>
Status open_status(const T& r) {
  return r.ok() ? Status() : r.status();
}

TEST(Safetensors, ReadsEveryDtype) {
  const std::string dir = temp_dir("dtypes");
  testing::Bytes data;
  data.put<float>(1.5f).put<float>(-2.0f).put<float>(3.0f).put<float>(0.1f);  // F32 [2, 2]
  data.put<uint16_t>(0x3c00).put<uint16_t>(0xb800).put<uint16_t>(0x0001);     // F16 [3]
  data.put<uint16_t>(0x4040).put<uint16_t>(0xbf80);                           // BF16 [2]
  data.put<int64_t>(7);                                                       // I64 [1]
  const std::string header =
      R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},)"
      R"("h":{"dtype":"F16","shape":[3],"data_offsets":[16,22]},)"
      R"("b":{"dtype":"BF16","shape":[2],"data_offsets":[22,26]},)"
      R"("i":{"dtype":"I64","shape":[1],"data_offsets":[26,34]}})";
  const std::string path = dir + "/model.safetensors";
  testing::write_bytes(path, st_bytes(header, data.b));
  auto r = SafetensorsFile::open(path);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->tensors().size(), 4u);
  EXPECT_EQ(r->metadata().at("format"), "pt");
  const SafetensorsTensorInfo* a = r->find_tensor("a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->shape, (std::vector<int64_t>{2, 2}));

  std::vector<float> f(4);
  std::vector<uint16_t> h(4);
  ASSERT_TRUE(r->read_tensor(*a, DType::f32, f.data()).ok());
  EXPECT_EQ(f, (std::vector<float>{1.5f, -2.0f, 3.0f, 0.1f}));
  ASSERT_TRUE(r->read_tensor(*a, DType::bf16, h.data()).ok());
  EXPECT_EQ(h[3], f32_to_bf16(0.1f));
  ASSERT_TRUE(r->read_tensor(*r->find_tensor("h"), DType::f32, f.data()).ok());
  EXPECT_EQ(f[0], 1.0f);
  EXPECT_EQ(f[1], -0.5f);
  EXPECT_EQ(f[2], std::ldexp(1.0f, -24));
  ASSERT_TRUE(r->read_tensor(*r->find_tensor("b"), DType::f32, f.data()).ok());
  EXPECT_EQ(f[0], 3.0f);
  EXPECT_EQ(f[1], -1.0f);
  ASSERT_TRUE(r->read_tensor(*r->find_tensor("b"), DType::bf16, h.data()).ok());
  EXPECT_EQ(h[0], 0x4040);
  expect_error(r->read_tensor(*r->find_tensor("i"), DType::f32, f.data()),
               {path, "'i'", "I64", "supported: F32, F16, BF16"});

  auto set = SafetensorsSet::open_dir(dir);
  ASSERT_TRUE(set.ok()) << set.status().message();
  EXPECT_NE(set->find_tensor("a"), nullptr);
  EXPECT_EQ(set->find_tensor("zz"), nullptr);
  expect_error(set->read_tensor("zz", DType::f32, f.data()), {"'zz' not found"});
}

TEST(Safetensors, BadHeaders) {
  const std::string dir = temp_dir("bad");
  const std::string p = dir + "/x.safetensors";
  auto check = [&](const std::vector<uint8_t>& bytes, std::vector<std::string> parts) {
    testing::write_bytes(p, bytes);
    parts.push_back(p);
    expect_error(open_status(SafetensorsFile::open(p)), parts);
  };
  check({1, 2, 3}, {"too short"});
  check(testing::Bytes().put<uint64_t>(1ull << 40).b, {"header length", "runs past the end"});
  check(st_bytes("{not json", {}), {"not valid JSON"});
  check(st_bytes("[1,2]", {}), {"JSON object"});
  check(st_bytes(R"({"w":{"dtype":"F32","shape":[2]}})", {}), {"'w'", "data_offsets"});
  check(st_bytes(R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})",
                 std::vector<uint8_t>(8)),
        {"'w'", "non-negative"});
  check(st_bytes(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})",
                 std::vector<uint8_t>(8)),
        {"'w'", "begin <= end"});
  check(st_bytes(R"({"blk":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})",
                 std::vector<uint8_t>(8)),
        {"'blk'", "runs past end of file"});
  check(st_bytes(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})",
                 std::vector<uint8_t>(8)),
        {"'w'", "needs 12"});
  check(st_bytes(R"({"w":{"dtype":"F16","shape":[4294967296,4294967296],"data_offsets":[0,8]}})",
                 std::vector<uint8_t>(8)),
        {"'w'"});
  // Empty directory: neither layout present.
  expect_error(open_status(SafetensorsSet::open_dir(temp_dir("empty"))), {"no model.safetensors"});
}

TEST(Safetensors, ShardedMatchesSingle) {
  auto single = SafetensorsSet::open_dir(invar::testing::test_data("tiny-llama"));
  auto sharded = SafetensorsSet::open_dir(invar::testing::test_data("tiny-llama-sharded"));
  ASSERT_TRUE(single.ok()) << single.status().message();
  ASSERT_TRUE(sharded.ok()) << sharded.status().message();
  EXPECT_EQ(single->files().size(), 1u);
  EXPECT_EQ(sharded->files().size(), 2u);
  const auto& tensors = single->files()[0].tensors();
  EXPECT_EQ(tensors.size(), 21u);  // embed, 2 x 9, norm, lm_head
  size_t total = 0;
  for (const auto& f : sharded->files()) total += f.tensors().size();
  EXPECT_EQ(total, tensors.size());
  for (const auto& t : tensors) {
    SCOPED_TRACE(t.name);
    const SafetensorsTensorInfo* s = sharded->find_tensor(t.name);
    ASSERT_NE(s, nullptr);
    EXPECT_EQ(s->shape, t.shape);
    std::vector<float> a(size_t(t.numel())), b(a.size());
    ASSERT_TRUE(single->read_tensor(t.name, DType::f32, a.data()).ok());
    ASSERT_TRUE(sharded->read_tensor(t.name, DType::f32, b.data()).ok());
    EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * 4));
  }
}

TEST(Safetensors, BadIndex) {
  const std::string src = invar::testing::test_data("tiny-llama-sharded");
  auto make = [&](const std::string& name, const std::string& index) {
    const std::string dir = temp_dir(name);
    for (const auto& e : fs::directory_iterator(src)) {
      if (e.path().extension() == ".safetensors") fs::copy(e.path(), dir);
    }
    write_text(dir + "/model.safetensors.index.json", index);
    return dir;
  };
  std::string d = make("noweights", R"({"metadata":{}})");
  expect_error(open_status(SafetensorsSet::open_dir(d)), {d, "index.json", "weight_map"});
  d = make("badjson", "{");
  expect_error(open_status(SafetensorsSet::open_dir(d)), {"index.json", "invalid JSON"});
  d = make("missingshard", R"({"weight_map":{"a":"model-00009-of-00009.safetensors"}})");
  expect_error(open_status(SafetensorsSet::open_dir(d)),
               {"model-00009-of-00009.safetensors", "cannot open"});
  d = make("wrongshard",
           R"({"weight_map":{"model.norm.weight":"model-00001-of-00002.safetensors"}})");
  expect_error(open_status(SafetensorsSet::open_dir(d)),
               {"'model.norm.weight'", "model-00001-of-00002.safetensors", "no such tensor"});
  d = make("escape", R"({"weight_map":{"a":"../x.safetensors"}})");
  expect_error(open_status(SafetensorsSet::open_dir(d)), {"not a plain file name"});
}

}  // namespace
}  // namespace invar::model
