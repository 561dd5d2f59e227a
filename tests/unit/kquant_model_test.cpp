// A GGUF model with every packed encoding (tests/data/tiny-kquants, scripts/make-kquant-models.py):
// it loads with its matrices packed in place in the file's mapping; every tensor decodes (scalar
// and SIMD) to the values the `gguf` Python package's decoder gave (expected.json: FNV-1a of the
// f32 bytes); its logits are the bits of the same file loaded as f32 (dequantize, then f32
// GEMMs); and broken files fail with a message naming the file and the tensor.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/block_quant.h"
#include "kernels/cpu/ops.h"
#include "model/gguf.h"
#include "model/transformer.h"
#include "model/weight_slots.h"
#include "test_paths.h"
#include "unit/gguf_writer.h"

namespace invar::model {
namespace {

using json = nlohmann::json;

const std::string kDir = "tiny-kquants";

uint64_t fnv1a64(const std::vector<float>& v) {
  uint64_t h = 0xcbf29ce484222325ull;
  const auto* b = reinterpret_cast<const uint8_t*>(v.data());
  for (size_t i = 0; i < v.size() * sizeof(float); ++i) h = (h ^ b[i]) * 0x100000001b3ull;
  return h;
}

json expected() {
  std::ifstream in(invar::testing::test_data(kDir + "/expected.json"));
  return json::parse(in);
}

std::map<std::string, const HostTensor*> by_gguf_name(const ModelConfig& c, ModelWeights& w) {
  std::map<std::string, const HostTensor*> out;
  EXPECT_TRUE(for_each_weight_slot(c, w, [&](const WeightSlot& s) -> Status {
                out[gguf_tensor_name(c, s)] = s.tensor;
                return {};
              }).ok());
  return out;
}

TEST(KQuantModel, LoadsPackedAndDecodesLikeTheGgufPackage) {
  auto m = load_model(invar::testing::test_data(kDir + "/model.gguf"), {});
  ASSERT_TRUE(m.ok()) << m.status().message();
  auto tensors = by_gguf_name(m->config, m->weights);
  const json want = expected()["tensors"];
  ASSERT_EQ(want.size(), 9u);
  for (const auto& [name, e] : want.items()) {
    SCOPED_TRACE(name);
    ASSERT_EQ(tensors.count(name), 1u);
    const HostTensor& t = *tensors[name];
    std::string type = e["type"];
    for (auto& ch : type) ch = char(std::tolower(ch));
    EXPECT_EQ(dtype_name(t.dtype), type);
    EXPECT_TRUE(t.bytes.is_view()) << "packed tensors stay in the file's mapping";
    EXPECT_EQ(t.shape, e["shape"].get<std::vector<int64_t>>());
    const int64_t rows = t.shape[0], cols = t.shape[1];
    std::vector<float> scalar(size_t(rows * cols)), simd(scalar.size());
    decode_to_f32(t.dtype, t.bytes.data(), rows * cols, scalar.data());
    kernels::cpu::decode_rows(t.dtype, t.bytes.data(), rows, cols, simd.data());
    EXPECT_EQ(fmt::format("{:016x}", fnv1a64(scalar)), e["fnv1a64_f32"].get<std::string>());
    EXPECT_EQ(0, std::memcmp(scalar.data(), simd.data(), scalar.size() * sizeof(float)));
    const auto first = e["first"].get<std::vector<double>>();
    for (size_t i = 0; i < first.size(); ++i) EXPECT_EQ(scalar[i], float(first[i])) << i;
  }
}

// Logits of a 40-token prompt, prefilled in chunks of `chunk`.
std::vector<float> logits_of(const LoadedModel& m, DType kv_dtype, int chunk) {
  ThreadPool pool(2);
  Transformer tr(m.config, m.weights, pool);
  KvCache cache(m.config, 4, 16, kv_dtype);
  std::vector<int32_t> ids;
  for (int i = 0; i < 40; ++i) ids.push_back(int32_t((i * 37 + 11) % m.config.vocab_size));
  const std::vector<int32_t> table{3, 1, 0};
  std::vector<float> all, logits;
  for (int start = 0; start < int(ids.size()); start += chunk) {
    const int n = std::min<int>(chunk, int(ids.size()) - start);
    BatchPlanBuilder b(16, 3);
    b.add_sequence(std::span<const int32_t>(ids).subspan(size_t(start), size_t(n)), start, table,
                   LogitRows::all);
    EXPECT_TRUE(tr.forward(b.build(), cache, logits).ok());
    all.insert(all.end(), logits.begin(), logits.end());
  }
  return all;
}

TEST(KQuantModel, PackedLogitsAreTheBitsOfTheDequantizedModel) {
  const std::string path = invar::testing::test_data(kDir + "/model.gguf");
  auto packed = load_model(path, {});
  LoadOptions f32;
  f32.weight_dtype = DType::f32;
  auto dequantized = load_model(path, f32);
  ASSERT_TRUE(packed.ok() && dequantized.ok());
  EXPECT_EQ(dequantized->weights.layers[0].w_down.dtype, DType::f32);
  for (DType kv : {DType::f32, DType::f16}) {
    for (int chunk : {40, 7}) {
      SCOPED_TRACE(::testing::Message() << dtype_name(kv) << " KV, chunks of " << chunk);
      const auto a = logits_of(*packed, kv, chunk);
      const auto b = logits_of(*dequantized, kv, chunk);
      ASSERT_EQ(a.size(), size_t(40 * 256));
      EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float)));
      double mx = 0;
      for (float v : a) mx = std::max(mx, double(std::fabs(v)));
      EXPECT_GT(mx, 0.1) << "logits of a working model are not all ~0";
      EXPECT_TRUE(std::isfinite(mx));
    }
  }
}

void expect_error(const Status& st, const std::vector<std::string>& parts) {
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.message().find('\n'), std::string::npos) << st.message();
  for (const auto& p : parts)
    EXPECT_NE(st.message().find(p), std::string::npos)
        << "missing '" << p << "' in: " << st.message();
}

TEST(KQuantModel, BrokenFilesFailWithClearErrors) {
  const std::string src = invar::testing::test_data(kDir + "/model.gguf");
  std::ifstream in(src, std::ios::binary);
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                             std::istreambuf_iterator<char>());
  auto f = GgufFile::open(src);
  ASSERT_TRUE(f.ok());
  // Cut inside the last packed tensor's blocks.
  const GgufTensorInfo* down = f->find_tensor("blk.0.ffn_down.weight");
  ASSERT_NE(down, nullptr);
  auto data = f->tensor_data(*down);
  ASSERT_TRUE(data.ok());
  const size_t down_at = size_t(*data - f->mapping()->data());  // its offset in the file
  const std::string cut = ::testing::TempDir() + "invar_kq_cut.gguf";
  testing::write_bytes(
      cut, std::vector<uint8_t>(bytes.begin(), bytes.begin() + std::ptrdiff_t(down_at + 100)));
  expect_error(load_model(cut, {}).status(), {cut, "runs past end of file"});

  // A NaN super-block scale (d of block 3 of ffn_down: Q4_K keeps d in bytes 0..1).
  auto nan = bytes;
  const size_t at = down_at + 3 * 144;
  nan[at] = 0x00, nan[at + 1] = 0x7e;  // f16 NaN
  const std::string nan_path = ::testing::TempDir() + "invar_kq_nan.gguf";
  testing::write_bytes(nan_path, nan);
  expect_error(load_model(nan_path, {}).status(),
               {nan_path, "'blk.0.ffn_down.weight'", "block 3", "q4_k", "NaN or infinite"});

  // A K-quant row shorter than a super-block.
  testing::GgufWriter w;
  w.tensor("blk.0.attn_q.weight", {2, 128}, uint32_t(GgmlType::q4_k), std::vector<uint8_t>(144, 0));
  const std::string short_row = ::testing::TempDir() + "invar_kq_row.gguf";
  testing::write_bytes(short_row, w.build());
  expect_error(GgufFile::open(short_row).status(),
               {short_row, "'blk.0.attn_q.weight'", "row length 128", "Q4_K block size 256"});
}

}  // namespace
}  // namespace invar::model
