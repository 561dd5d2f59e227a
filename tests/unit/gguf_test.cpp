// GGUF reader: metadata of every value type, each tensor encoding against hand-computed values,
// and malformed files (each must fail with a message naming the file and the offending part).
#include "model/gguf.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "unit/gguf_writer.h"

namespace invar::model {
namespace {

using testing::Bytes;
using testing::GgufWriter;

std::string temp_path(const std::string& name) {
  return ::testing::TempDir() + "invar_gguf_" + name;
}

std::string write(const std::string& name, const std::vector<uint8_t>& bytes) {
  std::string p = temp_path(name);
  testing::write_bytes(p, bytes);
  return p;
}

// Opening must fail with a message that contains every one of `parts`.
void expect_open_error(const std::string& path, std::vector<std::string> parts) {
  auto r = GgufFile::open(path);
  ASSERT_FALSE(r.ok()) << path;
  const std::string& msg = r.status().message();
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  for (const auto& p : parts)
    EXPECT_NE(msg.find(p), std::string::npos) << "missing '" << p << "' in: " << msg;
}

std::vector<uint8_t> f16_bytes(std::vector<uint16_t> v) {
  return testing::as_bytes(v);
}

TEST(Gguf, MetadataOfEveryType) {
  GgufWriter w;
  w.kv("u8", testing::kGU8, Bytes().put<uint8_t>(200));
  w.kv("i8", testing::kGI8, Bytes().put<int8_t>(-100));
  w.kv("u16", testing::kGU16, Bytes().put<uint16_t>(60000));
  w.kv("i16", testing::kGI16, Bytes().put<int16_t>(-30000));
  w.u32("u32", 4000000000u);
  w.i32("i32", -2000000000);
  w.f32("f32", 0.25f);
  w.kv("bool", testing::kGBool, Bytes().put<uint8_t>(1));
  w.str("str", "héllo");
  w.u64("u64", 1ull << 40);
  w.kv("i64", testing::kGI64, Bytes().put<int64_t>(-(1ll << 40)));
  w.kv("f64", testing::kGF64, Bytes().put<double>(-1.5));
  w.str_array("strs", {"a", "", "ccc"});
  w.kv("ints", testing::kGArray,
       Bytes()
           .put<uint32_t>(testing::kGI32)
           .put<uint64_t>(3)
           .put<int32_t>(-1)
           .put<int32_t>(0)
           .put<int32_t>(7));
  w.kv("floats", testing::kGArray,
       Bytes().put<uint32_t>(testing::kGF32).put<uint64_t>(2).put<float>(1.5f).put<float>(-2.0f));
  // [[1, 2], []] as an array of u8 arrays
  w.kv("nested", testing::kGArray,
       Bytes()
           .put<uint32_t>(testing::kGArray)
           .put<uint64_t>(2)
           .put<uint32_t>(testing::kGU8)
           .put<uint64_t>(2)
           .put<uint8_t>(1)
           .put<uint8_t>(2)
           .put<uint32_t>(testing::kGU8)
           .put<uint64_t>(0));
  for (uint32_t version : {2u, 3u}) {
    GgufWriter wv = w;
    auto bytes = wv.build();
    std::memcpy(bytes.data() + 4, &version, 4);
    auto r = GgufFile::open(write("meta" + std::to_string(version), bytes));
    ASSERT_TRUE(r.ok()) << r.status().message();
    const GgufFile& f = *r;
    EXPECT_EQ(f.version(), version);
    EXPECT_EQ(f.metadata().size(), 16u);
    EXPECT_EQ(*f.get_int("u8"), 200);
    EXPECT_EQ(*f.get_int("i8"), -100);
    EXPECT_EQ(*f.get_int("u16"), 60000);
    EXPECT_EQ(*f.get_int("i16"), -30000);
    EXPECT_EQ(*f.get_int("u32"), 4000000000ll);
    EXPECT_EQ(*f.get_int("i32"), -2000000000);
    EXPECT_EQ(*f.get_float("f32"), 0.25);
    EXPECT_EQ(*f.get_float("u32"), 4e9);  // integers read as numbers too
    EXPECT_EQ(std::get<bool>(f.metadata().at("bool").v), true);
    EXPECT_EQ(*f.get_string("str"), "héllo");
    EXPECT_EQ(*f.get_int("u64"), 1ll << 40);
    EXPECT_EQ(*f.get_int("i64"), -(1ll << 40));
    EXPECT_EQ(*f.get_float("f64"), -1.5);
    EXPECT_EQ(*f.get_string_array("strs"), (std::vector<std::string>{"a", "", "ccc"}));
    EXPECT_EQ(*f.get_int_array("ints"), (std::vector<int64_t>{-1, 0, 7}));
    EXPECT_EQ(*f.get_float_array("floats"), (std::vector<double>{1.5, -2.0}));
    const auto& nested = *std::get<std::shared_ptr<GgufArray>>(f.metadata().at("nested").v);
    ASSERT_EQ(nested.size(), 2u);
    const auto& first = *std::get<std::shared_ptr<GgufArray>>(nested[0].v);
    ASSERT_EQ(first.size(), 2u);
    EXPECT_EQ(std::get<uint64_t>(first[1].v), 2u);
    EXPECT_TRUE(std::get<std::shared_ptr<GgufArray>>(nested[1].v)->empty());
    EXPECT_TRUE(f.tensors().empty());

    // Wrong types and missing keys name the key.
    auto bad = f.get_int("str");
    ASSERT_FALSE(bad.ok());
    EXPECT_NE(bad.status().message().find("'str'"), std::string::npos);
    EXPECT_NE(bad.status().message().find("expected an integer"), std::string::npos);
    EXPECT_FALSE(f.get_string("u8").ok());
    EXPECT_FALSE(f.get_string_array("ints").ok());
    EXPECT_FALSE(f.get_int_array("strs").ok());
    auto missing = f.get_float("nope");
    ASSERT_FALSE(missing.ok());
    EXPECT_NE(missing.status().message().find("'nope' is missing"), std::string::npos);
  }
}

// A file written without the helper: checks the byte layout itself, including GGUF's
// innermost-first dimensions.
TEST(Gguf, HandBuiltFileShapeOrder) {
  Bytes b;
  b.put<uint32_t>(0x46554747).put<uint32_t>(3).put<uint64_t>(1).put<uint64_t>(1);
  b.str("general.architecture").put<uint32_t>(8).str("llama");
  b.str("t").put<uint32_t>(2).put<uint64_t>(4).put<uint64_t>(2).put<uint32_t>(0).put<uint64_t>(0);
  while (b.b.size() % 32) b.b.push_back(0);
  for (int i = 0; i < 8; ++i) b.put<float>(float(i) * 0.5f);
  auto r = GgufFile::open(write("hand", b.b));
  ASSERT_TRUE(r.ok()) << r.status().message();
  const GgufTensorInfo* t = r->find_tensor("t");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->shape, (std::vector<int64_t>{2, 4}));  // ne = [4, 2]
  EXPECT_EQ(t->numel(), 8);
  EXPECT_EQ(t->nbytes, 32u);
  std::vector<float> out(8);
  ASSERT_TRUE(r->read_tensor(*t, DType::f32, out.data()).ok());
  for (int i = 0; i < 8; ++i) EXPECT_EQ(out[size_t(i)], float(i) * 0.5f);
  EXPECT_EQ(r->find_tensor("u"), nullptr);
}

struct Expected {
  std::string name;
  std::vector<float> values;
};

// One file holding a tensor of each supported encoding, with the values it must decode to.
std::vector<Expected> build_all_types(GgufWriter& w) {
  std::vector<Expected> exp;
  // F32 [2, 3]
  std::vector<float> f32v = {1.0f, -2.5f, 3.25f, 1e-30f, -0.0f, 123456.789f};
  w.tensor("f32", {2, 3}, uint32_t(GgmlType::f32), testing::as_bytes(f32v));
  exp.push_back({"f32", f32v});
  // F16 [5]: 1, -2, 0.5, 65504 (largest), 2^-24 (smallest subnormal)
  w.tensor("f16", {5}, uint32_t(GgmlType::f16),
           f16_bytes({0x3c00, 0xc000, 0x3800, 0x7bff, 0x0001}));
  exp.push_back({"f16", {1.0f, -2.0f, 0.5f, 65504.0f, std::ldexp(1.0f, -24)}});
  // BF16 [3]: 1, -3, 2^-126
  w.tensor("bf16", {3}, uint32_t(GgmlType::bf16), f16_bytes({0x3f80, 0xc040, 0x0080}));
  exp.push_back({"bf16", {1.0f, -3.0f, std::ldexp(1.0f, -126)}});
  // Q8_0 [1, 64]: block 0 d = 0.5, q_j = j - 16; block 1 d = -2, q = 127, -128, 0, ...
  {
    Bytes b;
    std::vector<float> v;
    b.put<uint16_t>(0x3800);
    for (int j = 0; j < 32; ++j) {
      b.put<int8_t>(int8_t(j - 16));
      v.push_back(float(j - 16) * 0.5f);
    }
    b.put<uint16_t>(0xc000);
    for (int j = 0; j < 32; ++j) {
      int8_t q = j == 0 ? 127 : j == 1 ? -128 : int8_t(j % 5);
      b.put<int8_t>(q);
      v.push_back(float(q) * -2.0f);
    }
    w.tensor("q8_0", {1, 64}, uint32_t(GgmlType::q8_0), b.b);
    exp.push_back({"q8_0", v});
  }
  // Q4_0 [2, 32]: row 0 d = 0.25, byte j = j | (15 - j) << 4; row 1 d = 3, bytes 0x8f.
  {
    Bytes b;
    std::vector<float> v(64);
    b.put<uint16_t>(0x3400);
    for (int j = 0; j < 16; ++j) {
      b.put<uint8_t>(uint8_t(j | ((15 - j) << 4)));
      v[size_t(j)] = float(j - 8) * 0.25f;            // low nibble: element j
      v[size_t(j + 16)] = float(15 - j - 8) * 0.25f;  // high nibble: element j + 16
    }
    b.put<uint16_t>(0x4200);
    for (int j = 0; j < 16; ++j) {
      b.put<uint8_t>(0x8f);
      v[size_t(32 + j)] = (15 - 8) * 3.0f;
      v[size_t(48 + j)] = 0.0f;
    }
    w.tensor("q4_0", {2, 32}, uint32_t(GgmlType::q4_0), b.b);
    exp.push_back({"q4_0", v});
  }
  // Q4_1 [1, 32]: d = 0.5, m = -1; byte j = (j % 16) | (j / 2) << 4.
  {
    Bytes b;
    std::vector<float> v(32);
    b.put<uint16_t>(0x3800).put<uint16_t>(0xbc00);
    for (int j = 0; j < 16; ++j) {
      b.put<uint8_t>(uint8_t(j | ((j / 2) << 4)));
      v[size_t(j)] = float(j) * 0.5f - 1.0f;
      v[size_t(j + 16)] = float(j / 2) * 0.5f - 1.0f;
    }
    w.tensor("q4_1", {1, 32}, uint32_t(GgmlType::q4_1), b.b);
    exp.push_back({"q4_1", v});
  }
  return exp;
}

TEST(Gguf, DequantizesEveryTypeToF32AndBf16) {
  for (uint64_t alignment : {32u, 64u}) {
    GgufWriter w(3, alignment);
    if (alignment != 32) w.u32("general.alignment", uint32_t(alignment));
    auto expected = build_all_types(w);
    auto r = GgufFile::open(write("types" + std::to_string(alignment), w.build()));
    ASSERT_TRUE(r.ok()) << r.status().message();
    ASSERT_EQ(r->tensors().size(), expected.size());
    for (const auto& e : expected) {
      SCOPED_TRACE(e.name);
      const GgufTensorInfo* t = r->find_tensor(e.name);
      ASSERT_NE(t, nullptr);
      EXPECT_EQ(t->offset % alignment, 0u);
      ASSERT_EQ(size_t(t->numel()), e.values.size());
      std::vector<float> f(e.values.size());
      ASSERT_TRUE(r->read_tensor(*t, DType::f32, f.data()).ok());
      std::vector<uint16_t> h(e.values.size());
      ASSERT_TRUE(r->read_tensor(*t, DType::bf16, h.data()).ok());
      for (size_t i = 0; i < f.size(); ++i) {
        EXPECT_EQ(f32_to_bits(f[i]), f32_to_bits(e.values[i])) << "element " << i;
        EXPECT_EQ(h[i], f32_to_bf16(e.values[i])) << "element " << i;
      }
    }
    const GgufTensorInfo* q = r->find_tensor("q4_0");
    EXPECT_EQ(q->shape, (std::vector<int64_t>{2, 32}));
    EXPECT_EQ(q->nbytes, 36u);
    EXPECT_EQ(r->find_tensor("q4_1")->nbytes, 20u);
    EXPECT_EQ(r->find_tensor("q8_0")->nbytes, 68u);
    // Only f32 and bf16 outputs.
    std::vector<uint16_t> h(6);
    auto st = r->read_tensor(*r->find_tensor("f32"), DType::f16, h.data());
    EXPECT_FALSE(st.ok());
  }
}

std::vector<uint8_t> small_valid_file() {
  GgufWriter w;
  w.str("general.architecture", "llama").str_array("tokenizer.ggml.tokens", {"a", "b"});
  w.tensor("blk.0.w", {2, 4}, uint32_t(GgmlType::f32), std::vector<uint8_t>(32, 0));
  w.tensor("blk.1.w", {1, 32}, uint32_t(GgmlType::q4_1), std::vector<uint8_t>(20, 0));
  return w.build();
}

TEST(Gguf, EveryTruncationFails) {
  auto bytes = small_valid_file();
  ASSERT_TRUE(GgufFile::open(write("full", bytes)).ok());
  for (size_t cut = 0; cut < bytes.size(); ++cut) {
    SCOPED_TRACE(cut);
    std::vector<uint8_t> part(bytes.begin(), bytes.begin() + std::ptrdiff_t(cut));
    expect_open_error(write("cut", part), {});
  }
  // Named cut points: inside the header, a key, a tensor name, and the data.
  auto p = write("cut_hdr", std::vector<uint8_t>(bytes.begin(), bytes.begin() + 10));
  expect_open_error(p, {"header (tensor count)", "truncated"});
  p = write("cut_data", std::vector<uint8_t>(bytes.begin(), bytes.end() - 1));
  expect_open_error(p, {"tensor 'blk.1.w'", "runs past end of file"});
}

TEST(Gguf, WrongMagicAndVersion) {
  auto bytes = small_valid_file();
  auto bad = bytes;
  bad[0] = 'X';
  expect_open_error(write("magic", bad), {"not a GGUF file"});
  for (uint32_t v : {1u, 4u}) {
    bad = bytes;
    std::memcpy(bad.data() + 4, &v, 4);
    expect_open_error(write("version", bad), {"unsupported GGUF version " + std::to_string(v)});
  }
  expect_open_error(temp_path("does_not_exist"), {"cannot open"});
}

TEST(Gguf, TensorOffsetPastEnd) {
  GgufWriter w;
  w.tensor("a", {8}, uint32_t(GgmlType::f32), std::vector<uint8_t>(32, 0));
  w.tensor("blk.3.ffn_up.weight", {8}, uint32_t(GgmlType::f32), std::vector<uint8_t>(32, 0))
      .override_offset(1 << 20);
  expect_open_error(write("offset", w.build()),
                    {"tensor 'blk.3.ffn_up.weight'", "32 bytes", "runs past end of file"});
  GgufWriter m;
  m.tensor("misaligned", {8}, uint32_t(GgmlType::f32), std::vector<uint8_t>(32, 0))
      .override_offset(4);
  expect_open_error(write("misaligned", m.build()), {"'misaligned'", "alignment 32"});
}

TEST(Gguf, AbsurdCountsAreErrorsNotAllocations) {
  auto header = [](uint64_t tensors, uint64_t kvs) {
    return Bytes()
        .put<uint32_t>(0x46554747)
        .put<uint32_t>(3)
        .put<uint64_t>(tensors)
        .put<uint64_t>(kvs);
  };
  expect_open_error(write("many_tensors", header(1ull << 60, 0).b), {"tensors", "cannot fit"});
  expect_open_error(write("many_kvs", header(0, 1ull << 60).b), {"metadata entries", "cannot fit"});
  // A string length of 2^62.
  auto b = header(0, 1).put<uint64_t>(1ull << 62).put<uint64_t>(0).put<uint64_t>(0);
  expect_open_error(write("long_key", b.b), {"runs past the end"});
  b = header(0, 1).str("k").put<uint32_t>(testing::kGString).put<uint64_t>(~0ull);
  expect_open_error(write("long_str", b.b), {"'k'", "runs past the end"});
  // An array of 2^62 u64 values.
  b = header(0, 1)
          .str("arr")
          .put<uint32_t>(testing::kGArray)
          .put<uint32_t>(testing::kGU64)
          .put<uint64_t>(1ull << 62);
  expect_open_error(write("long_arr", b.b), {"'arr'", "cannot fit"});
  // Dimensions whose product overflows.
  b = header(1, 0)
          .str("big")
          .put<uint32_t>(2)
          .put<uint64_t>(1ull << 40)
          .put<uint64_t>(1ull << 40)
          .put<uint32_t>(0)
          .put<uint64_t>(0);
  expect_open_error(write("overflow", b.b), {"'big'", "overflows"});
  // Arrays nested beyond any real file.
  b = header(0, 1).str("deep").put<uint32_t>(testing::kGArray);
  for (int i = 0; i < 40; ++i) b.put<uint32_t>(testing::kGArray).put<uint64_t>(1);
  b.put<uint32_t>(testing::kGU8).put<uint64_t>(0);
  expect_open_error(write("deep", b.b), {"'deep'", "nested deeper"});
}

TEST(Gguf, MalformedEntries) {
  auto header = [](uint64_t tensors, uint64_t kvs) {
    return Bytes()
        .put<uint32_t>(0x46554747)
        .put<uint32_t>(2)
        .put<uint64_t>(tensors)
        .put<uint64_t>(kvs);
  };
  auto b = header(0, 1).str("k").put<uint32_t>(13).put<uint64_t>(0);
  expect_open_error(write("kvtype", b.b), {"'k'", "unknown value type 13"});
  b = header(0, 1).str("flag").put<uint32_t>(testing::kGBool).put<uint8_t>(2);
  expect_open_error(write("bool", b.b), {"'flag'", "bool"});
  b = header(0, 2)
          .str("k")
          .put<uint32_t>(testing::kGU8)
          .put<uint8_t>(1)
          .str("k")
          .put<uint32_t>(testing::kGU8)
          .put<uint8_t>(1);
  expect_open_error(write("dupkey", b.b), {"'k' appears twice"});
  b = header(1, 0).str("t5").put<uint32_t>(5);
  for (int i = 0; i < 5; ++i) b.put<uint64_t>(1);
  b.put<uint32_t>(0).put<uint64_t>(0);
  expect_open_error(write("ndims", b.b), {"'t5'", "5 dimensions"});
  GgufWriter a;
  a.u32("general.alignment", 3);
  expect_open_error(write("align", a.build()), {"general.alignment", "power of two"});
  GgufWriter q;
  q.tensor("blk.0.attn_q.weight", {2, 16}, uint32_t(GgmlType::q4_0), std::vector<uint8_t>(18, 0));
  expect_open_error(write("qrow", q.build()), {"'blk.0.attn_q.weight'", "row length 16", "Q4_0"});
  GgufWriter d;
  d.tensor("x", {1}, 0, {0, 0, 0, 0}).tensor("x", {1}, 0, {0, 0, 0, 0});
  expect_open_error(write("duptensor", d.build()), {"'x' appears twice"});
}

TEST(Gguf, UnsupportedTensorTypeFailsOnRead) {
  GgufWriter w;
  w.tensor("blk.0.ffn_down.weight", {1, 256}, 23 /* IQ4_XS */, std::vector<uint8_t>(144, 0));
  const std::string path = write("iq4xs", w.build());
  auto r = GgufFile::open(path);
  ASSERT_TRUE(r.ok()) << r.status().message();
  std::vector<float> out(256);
  Status st = r->read_tensor(r->tensors()[0], DType::f32, out.data());
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find(path), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("'blk.0.ffn_down.weight'"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("IQ4_XS"), std::string::npos) << st.message();
}

TEST(Gguf, ReadTensorRechecksForeignInfo) {
  auto r = GgufFile::open(write("valid", small_valid_file()));
  ASSERT_TRUE(r.ok());
  GgufTensorInfo fake = r->tensors()[0];
  fake.offset = 1 << 30;
  std::vector<float> out(8);
  EXPECT_FALSE(r->read_tensor(fake, DType::f32, out.data()).ok());
  fake = r->tensors()[0];
  fake.shape = {4, 4};  // claims more elements than nbytes holds
  std::vector<float> out2(16);
  EXPECT_FALSE(r->read_tensor(fake, DType::f32, out2.data()).ok());
}

}  // namespace
}  // namespace invar::model
