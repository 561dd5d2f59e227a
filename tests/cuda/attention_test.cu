// GPU tests of kernels/cuda/attention.h (CTest label `cuda`; run by scripts/gpu-check).
//   S = sequences, T = tokens, Hq / Hkv = query / kv heads, D = head dim, L = target length
// Data: every logical sequence `id` has K, V and Q values that are a hash of (id, position,
// head, dim), so any batch can hold any slice of any sequence, and the cache pages of a
// sequence are shared read-only by every batch entry that names it. Physical blocks are a
// random permutation, so sequences interleave in memory.
// 1. Correctness: a mixed batch (decode steps, prefill chunks, awkward lengths 1, 7, 17, 129,
//    769, 5125) in both modes against an f64 reference computed from the hashes, not the cache.
// 2. Invariance (R3), bitwise: the target's rows computed as 1-token decode steps (at
//    positions crossing tile and split boundaries, in batches of 1..255 next to random other
//    sequences), in every chunking of its prompt, in prefills of many lengths, and under
//    every cache block size, equal the rows of one prefill of the whole target.
// 3. Negative control (R8): the same comparisons in fast mode find differences.
// 4. The Hopper wgmma kernel (sm90/attention_sm90.cu; skipped on other GPUs): against the f64
//    reference, and bitwise against the mma.sync kernel on every batch of the invariance suite
//    (all rows, both modes, wgmma for prefill only and for split items too), under several cache
//    block sizes (TMA page boxes and the cp.async path) and split groupings; decode on mma.sync
//    against one wgmma prefill of the target. Differences are reported with where they fall
//    (dim half, warpgroup, warp, row in the warp, position in the tile) and their size in ulps.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kernels/cuda/attention.h"
#include "test_util.cuh"

namespace invar::kernels::cuda {
namespace {

using namespace cudatest;

struct AttnShape {
  const char* name;
  int hq, hkv, d;
};
constexpr AttnShape kSmol{"smollm2-135m", 9, 3, 64};
constexpr AttnShape kQwen3{"qwen3-8b", 32, 8, 128};

// Which kernel computes whole-row (prefill) items and which split items.
struct KernelConfig {
  const char* name;
  AttentionKernel prefill, split;
};
constexpr KernelConfig kMmaSync{"mma_sync", AttentionKernel::mma_sync, AttentionKernel::mma_sync};
constexpr KernelConfig kWgmmaPrefill{"wgmma prefill", AttentionKernel::wgmma,
                                     AttentionKernel::mma_sync};
constexpr KernelConfig kWgmmaAll{"wgmma all", AttentionKernel::wgmma, AttentionKernel::wgmma};

// Selects a kernel config on a harness; skips the test where wgmma cannot run (not sm_90).
#define USE_KERNELS(h, cfg)                                                 \
  do {                                                                      \
    const ::invar::Status s_ = (h).set_kernels((cfg).prefill, (cfg).split); \
    if (!s_.ok()) GTEST_SKIP() << (cfg).name << ": " << s_.message();       \
  } while (0)

constexpr uint64_t kSeedK = 11, kSeedV = 12, kSeedQ = 13;
constexpr float kQScale = 3.0f;  // peakier softmax than uniform [-1, 1) queries give

// Element index of a logical value: (id, pos, head, dim) -> hash input.
__host__ __device__ inline uint64_t key(int id, int pos, int head, int dim) {
  return ((uint64_t(id) * 1000003ull + uint64_t(pos)) * 256ull + uint64_t(head)) * 512ull +
         uint64_t(dim);
}
__host__ __device__ inline uint16_t k_bits(int id, int p, int h, int d) {
  return bf16_bits(uniform(kSeedK, key(id, p, h, d)));
}
__host__ __device__ inline uint16_t v_bits(int id, int p, int h, int d) {
  return bf16_bits(uniform(kSeedV, key(id, p, h, d)));
}
__host__ __device__ inline uint16_t q_bits(int id, int p, int h, int d) {
  return bf16_bits(kQScale * uniform(kSeedQ, key(id, p, h, d)));
}

// Writes sequence `id`'s K/V for positions [0, len) into its pages.
__global__ void fill_cache_kernel(uint16_t* ck, uint16_t* cv, const int32_t* table, int id, int len,
                                  int block_size, int hkv, int d) {
  const int64_t total = int64_t(len) * hkv * d;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int dd = int(i % d), h = int((i / d) % hkv), p = int(i / (int64_t(d) * hkv));
    const int64_t slot = int64_t(table[p / block_size]) * block_size + p % block_size;
    const int64_t off = (slot * hkv + h) * d + dd;
    ck[off] = k_bits(id, p, h, dd);
    cv[off] = v_bits(id, p, h, dd);
  }
}

// q[t, h, :] for tokens given as (id, pos) pairs.
__global__ void fill_q_kernel(uint16_t* q, const int32_t* tok_id, const int32_t* tok_pos,
                              int64_t tokens, int hq, int d) {
  const int64_t total = tokens * hq * d;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int dd = int(i % d), h = int((i / d) % hq);
    const int64_t t = i / (int64_t(d) * hq);
    q[i] = q_bits(tok_id[t], tok_pos[t], h, dd);
  }
}

// Dense logical K / V of one sequence, [len, Hkv, D] bf16, for the reference.
__global__ void fill_dense_kernel(uint16_t* k, uint16_t* v, int id, int len, int hkv, int d) {
  const int64_t total = int64_t(len) * hkv * d;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int dd = int(i % d), h = int((i / d) % hkv), p = int(i / (int64_t(d) * hkv));
    k[i] = k_bits(id, p, h, dd);
    v[i] = v_bits(id, p, h, dd);
  }
}

// f64 reference from the logical (unpaged) data: one thread per (token, q head); every token of
// the batch belongs to sequence id 0 or 1, whose dense K / V are k0 / v0 and k1 / v1.
__global__ void reference_kernel(const int32_t* tok_id, const int32_t* tok_pos, int64_t tokens,
                                 int hq, int hkv, int d, double scale, const uint16_t* k0,
                                 const uint16_t* v0, const uint16_t* k1, const uint16_t* v1,
                                 double* out) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= tokens * hq) return;
  const int64_t t = i / hq;
  const int h = int(i % hq), kvh = h / (hq / hkv);
  const int id = tok_id[t], pos = tok_pos[t];
  const uint16_t* k = id == 0 ? k0 : k1;
  const uint16_t* v = id == 0 ? v0 : v1;
  double q[128], acc[128];
  for (int j = 0; j < d; ++j) {
    q[j] = double(bf16_value(q_bits(id, pos, h, j)));
    acc[j] = 0;
  }
  double mx = -1e300;
  for (int p = 0; p <= pos; ++p) {
    const uint16_t* kr = k + (int64_t(p) * hkv + kvh) * d;
    double s = 0;
    for (int j = 0; j < d; ++j) s += q[j] * double(bf16_value(kr[j]));
    mx = fmax(mx, s * scale);
  }
  double sum = 0;
  for (int p = 0; p <= pos; ++p) {
    const uint16_t* kr = k + (int64_t(p) * hkv + kvh) * d;
    const uint16_t* vr = v + (int64_t(p) * hkv + kvh) * d;
    double s = 0;
    for (int j = 0; j < d; ++j) s += q[j] * double(bf16_value(kr[j]));
    const double w = exp(s * scale - mx);
    sum += w;
    for (int j = 0; j < d; ++j) acc[j] += w * double(bf16_value(vr[j]));
  }
  for (int j = 0; j < d; ++j) out[i * d + j] = acc[j] / sum;
}

// One batch entry: tokens [q_start, q_start + q_len) of logical sequence `id`.
struct Entry {
  int id, q_start, q_len;
};

struct BatchOut {
  std::vector<uint16_t> out;      // [T, Hq, D]
  std::vector<int32_t> q_indptr;  // [S + 1]
  CudaAttention::Stats stats;
};

// Owns a paged cache holding every logical sequence of a test, and runs batches over it.
class Harness {
 public:
  Harness(const AttnShape& shape, int block_size, const std::vector<int>& lengths, uint64_t seed)
      : shape_(shape), block_size_(block_size), lengths_(lengths) {
    int total_blocks = 0;
    for (int len : lengths) total_blocks += (len + block_size - 1) / block_size;
    std::vector<int32_t> perm(size_t(total_blocks) + 1);
    std::iota(perm.begin(), perm.end(), 0);
    std::mt19937_64 rng(seed);
    std::shuffle(perm.begin(), perm.end(), rng);
    num_blocks_ = total_blocks + 1;
    max_blocks_ = 1;
    size_t next = 0;
    for (int len : lengths) {
      const int nb = (len + block_size - 1) / block_size;
      tables_.emplace_back(perm.begin() + long(next), perm.begin() + long(next + size_t(nb)));
      next += size_t(nb);
      max_blocks_ = std::max(max_blocks_, nb);
    }
    const size_t cache_elems = size_t(num_blocks_) * block_size * shape.hkv * shape.d;
    k_ = device_buffer(cache_elems * 2);
    v_ = device_buffer(cache_elems * 2);
    // Unused slots hold NaN: a kernel that reads past a sequence's length poisons its output.
    poison_bf16(k_.as(), int64_t(cache_elems));
    poison_bf16(v_.as(), int64_t(cache_elems));
    for (size_t id = 0; id < lengths.size(); ++id) {
      DeviceBuffer t = upload(tables_[id]);
      fill_cache_kernel<<<512, 256>>>(k_.as<uint16_t>(), v_.as<uint16_t>(), t.as<int32_t>(),
                                      int(id), lengths[id], block_size, shape.hkv, shape.d);
      cudaDeviceSynchronize();
    }
    auto created = CudaAttention::create(0);
    if (created.ok()) attn_ = std::move(*created);
  }

  bool ok() const { return k_.as() && v_.as() && attn_; }
  int length(int id) const { return lengths_[size_t(id)]; }

  void tokens_of(const std::vector<Entry>& batch, std::vector<int32_t>& ids,
                 std::vector<int32_t>& pos) const {
    for (const Entry& e : batch) {
      for (int t = 0; t < e.q_len; ++t) {
        ids.push_back(e.id);
        pos.push_back(e.q_start + t);
      }
    }
  }

  // Runs one step; `out` is poisoned first.
  void run(const std::vector<Entry>& batch, KernelMode mode, BatchOut& res) {
    const int S = int(batch.size());
    std::vector<int32_t> q_indptr{0}, kv_lens, tables(size_t(S) * max_blocks_, -1);
    for (int s = 0; s < S; ++s) {
      const Entry& e = batch[size_t(s)];
      ASSERT_LE(e.q_start + e.q_len, lengths_[size_t(e.id)]);
      q_indptr.push_back(q_indptr.back() + e.q_len);
      kv_lens.push_back(e.q_start + e.q_len);
      const auto& tb = tables_[size_t(e.id)];
      std::copy(tb.begin(), tb.end(), tables.begin() + long(s) * max_blocks_);
    }
    std::vector<int32_t> ids, pos;
    tokens_of(batch, ids, pos);
    const int64_t T = int64_t(ids.size());
    const int64_t row = int64_t(shape_.hq) * shape_.d;
    DeviceBuffer d_ids = upload(ids), d_pos = upload(pos), d_tables = upload(tables);
    DeviceBuffer q = device_buffer(size_t(T * row) * 2), out = device_buffer(size_t(T * row) * 2);
    fill_q_kernel<<<512, 256>>>(q.as<uint16_t>(), d_ids.as<int32_t>(), d_pos.as<int32_t>(), T,
                                shape_.hq, shape_.d);
    poison_bf16(out.as(), T * row);
    CUDA_OK(cudaDeviceSynchronize());

    AttentionPlan hp;
    hp.num_seqs = S;
    hp.q_indptr = q_indptr.data();
    hp.kv_lens = kv_lens.data();
    hp.max_blocks_per_seq = max_blocks_;
    hp.block_size = block_size_;
    const AttentionDims dims{.q_heads = shape_.hq,
                             .kv_heads = shape_.hkv,
                             .head_dim = shape_.d,
                             .scale = 1.0f / std::sqrt(float(shape_.d))};
    STATUS_OK(attn_->plan(hp, dims, mode, nullptr));
    AttentionPlan dp = hp;
    dp.q_indptr = nullptr;
    dp.kv_lens = nullptr;
    dp.block_tables = d_tables.as<int32_t>();
    const KvCacheRef cache{k_.as<__nv_bfloat16>(),
                           v_.as<__nv_bfloat16>(),
                           num_blocks_,
                           block_size_,
                           shape_.hkv,
                           shape_.d};
    STATUS_OK(
        attn_->run(q.as<__nv_bfloat16>(), row, cache, dp, out.as<__nv_bfloat16>(), row, nullptr));
    CUDA_OK(cudaDeviceSynchronize());
    CUDA_OK(cudaGetLastError());
    res.out = download<uint16_t>(out.as(), size_t(T * row));
    res.q_indptr = q_indptr;
    res.stats = attn_->stats();
  }

  const AttnShape& shape() const { return shape_; }
  CudaAttention& attention() { return *attn_; }

  // Which kernels the following runs use (attention.h); fails off sm_90 for wgmma.
  Status set_kernels(AttentionKernel prefill, AttentionKernel split) {
    INVAR_RETURN_IF_ERROR(attn_->set_prefill_kernel(prefill));
    return attn_->set_split_kernel(split);
  }

 private:
  AttnShape shape_;
  int block_size_;
  std::vector<int> lengths_;
  std::vector<std::vector<int32_t>> tables_;
  int num_blocks_ = 0, max_blocks_ = 0;
  DeviceBuffer k_, v_;
  std::unique_ptr<CudaAttention> attn_;
};

// Logical sequences of every test: 0 = the target (L = 2100: 33 tiles, 9 splits), 1 = a long
// one (5125), 2.. = a pool of random lengths for the neighbours.
constexpr int kTargetLen = 2100;
constexpr int kPool = 24;
std::vector<int> test_lengths() {
  std::vector<int> lens{kTargetLen, 5125};
  std::mt19937 rng(7);
  for (int i = 0; i < kPool; ++i) lens.push_back(1 + int(rng() % 3000));
  return lens;
}

// A random neighbour: a decode step (half the time) or a prefill chunk of a pool sequence.
Entry random_other(std::mt19937& rng, const Harness& h, bool decode_only) {
  const int id = 2 + int(rng() % kPool);
  const int len = h.length(id);
  const int q_len = decode_only || rng() % 2 ? 1 : 1 + int(rng() % std::min(len, 300));
  const int q_start = int(rng() % uint32_t(len - q_len + 1));
  return {id, q_start, q_len};
}

// Positions where tiles (64) and splits (256) begin and end, and a few random ones.
std::vector<int> boundary_positions() {
  std::vector<int> p{0,    1,    2,    31,   62,   63,   64,   65,   127,  128,  129,
                     191,  255,  256,  257,  319,  511,  512,  513,  767,  768,  769,
                     1023, 1024, 1025, 1279, 1535, 1536, 1537, 2047, 2048, 2049, 2099};
  std::mt19937 rng(3);
  for (int i = 0; i < 16; ++i) p.push_back(int(rng() % kTargetLen));
  return p;
}

// Rows of the target (id 0) in a batch output, compared with the reference rows bit for bit.
// Returns the number of differing rows; every target row must have been written.
int64_t count_target_diffs(const BatchOut& b, const std::vector<Entry>& batch,
                           const std::vector<uint16_t>& ref, int64_t row, int64_t* compared) {
  if (b.q_indptr.size() != batch.size() + 1 || ref.empty()) {
    ADD_FAILURE() << "the batch or the reference did not run";
    return int64_t(1) << 40;
  }
  int64_t diffs = 0;
  for (size_t s = 0; s < batch.size(); ++s) {
    if (batch[s].id != 0) continue;
    for (int t = 0; t < batch[s].q_len; ++t) {
      const int64_t tok = b.q_indptr[s] + t;
      const int64_t p = batch[s].q_start + t;
      diffs += std::memcmp(b.out.data() + tok * row, ref.data() + p * row, size_t(row) * 2) != 0;
      ++*compared;
    }
  }
  return diffs;
}

void expect_all_finite(const std::vector<uint16_t>& v, const char* what) {
  int64_t bad = 0;
  for (uint16_t h : v) bad += (h & 0x7f80u) == 0x7f80u;
  EXPECT_EQ(bad, 0) << what << ": " << bad << " outputs are NaN/inf (unwritten or read garbage)";
}

class AttentionCuda : public ::testing::TestWithParam<AttnShape> {};

// One mixed step in both modes against the f64 reference, with the harness's kernels.
void expect_matches_f64(Harness& h, const KernelConfig& cfg) {
  const AttnShape sh = h.shape();
  // Awkward lengths: decode at kv 1, 7, 769, 5125; chunks of 17, 129, 64, 5 and 300 tokens.
  std::vector<Entry> batch{{1, 0, 1},    {1, 0, 7},     {1, 768, 1},  {1, 5124, 1},
                           {0, 0, 17},   {0, 0, 129},   {0, 300, 64}, {0, 1000, 5},
                           {0, 2099, 1}, {1, 4900, 40}, {1, 0, 1}};
  std::vector<int32_t> ids, pos;
  h.tokens_of(batch, ids, pos);
  const int64_t T = int64_t(ids.size()), row = int64_t(sh.hq) * sh.d;
  DeviceBuffer d_ids = upload(ids), d_pos = upload(pos), ref_d = device_buffer(size_t(T * row) * 8);
  DeviceBuffer dense[2][2];
  for (int id = 0; id < 2; ++id) {
    const int64_t n = int64_t(h.length(id)) * sh.hkv * sh.d;
    dense[id][0] = device_buffer(size_t(n) * 2);
    dense[id][1] = device_buffer(size_t(n) * 2);
    fill_dense_kernel<<<512, 256>>>(dense[id][0].as<uint16_t>(), dense[id][1].as<uint16_t>(), id,
                                    h.length(id), sh.hkv, sh.d);
  }
  reference_kernel<<<unsigned((T * sh.hq + 127) / 128), 128>>>(
      d_ids.as<int32_t>(), d_pos.as<int32_t>(), T, sh.hq, sh.hkv, sh.d,
      1.0 / std::sqrt(double(sh.d)), dense[0][0].as<uint16_t>(), dense[0][1].as<uint16_t>(),
      dense[1][0].as<uint16_t>(), dense[1][1].as<uint16_t>(), ref_d.as<double>());
  CUDA_OK(cudaDeviceSynchronize());
  const std::vector<double> ref = download<double>(ref_d.as(), size_t(T * row));
  for (KernelMode mode : {KernelMode::invariant, KernelMode::fast}) {
    BatchOut b;
    h.run(batch, mode, b);
    ASSERT_EQ(b.out.size(), size_t(T * row));
    expect_all_finite(b.out, kernel_mode_name(mode));
    double worst = 0;
    for (int64_t r = 0; r < T * sh.hq; ++r) {
      double num = 0, den = 0;
      for (int j = 0; j < sh.d; ++j) {
        const double o = bf16_value(b.out[size_t(r * sh.d + j)]), e = ref[size_t(r * sh.d + j)];
        num += (o - e) * (o - e);
        den += e * e;
      }
      worst = std::max(worst, std::sqrt(num / std::max(den, 1e-30)));
    }
    std::printf(
        "%-13s %-9s %-13s worst row |out - ref| / |ref| = %.2e (%lld rows; %lld CTAs, %lld "
        "split CTAs, %lld merge CTAs, %lld wgmma CTAs)\n",
        sh.name, kernel_mode_name(mode), cfg.name, worst, (long long)(T * sh.hq),
        (long long)b.stats.ctas, (long long)b.stats.split_ctas, (long long)b.stats.merge_ctas,
        (long long)b.stats.wgmma_ctas);
    EXPECT_LT(worst, 1e-2) << kernel_mode_name(mode) << ", " << cfg.name;
    if (cfg.prefill == AttentionKernel::wgmma) EXPECT_GT(b.stats.wgmma_ctas, 0) << cfg.name;
  }
}

TEST_P(AttentionCuda, MatchesF64Reference) {
  REQUIRE_GPU();
  Harness h(GetParam(), 16, test_lengths(), 1);
  ASSERT_TRUE(h.ok());
  expect_matches_f64(h, kMmaSync);
}

TEST_P(AttentionCuda, WgmmaMatchesF64Reference) {
  REQUIRE_GPU();
  Harness h(GetParam(), 16, test_lengths(), 1);
  ASSERT_TRUE(h.ok());
  for (const KernelConfig& cfg : {kWgmmaPrefill, kWgmmaAll}) {
    USE_KERNELS(h, cfg);
    expect_matches_f64(h, cfg);
  }
}

// The invariance suite in one mode; returns (differing rows, compared rows) per part.
struct Diffs {
  int64_t decode = 0, decode_n = 0, batch = 0, batch_n = 0, chunk = 0, chunk_n = 0, prefix = 0,
          prefix_n = 0;
  int64_t total() const { return decode + batch + chunk + prefix; }
};

// The invariance suite's steps: the same batches for every mode and kernel (fixed seeds).
enum class Part { decode, batch_size, chunking, prefix };
struct SuiteBatch {
  Part part;
  std::vector<Entry> batch;
};

std::vector<SuiteBatch> suite_batches(const Harness& h) {
  std::vector<SuiteBatch> out;
  std::mt19937 rng(42);
  const std::vector<int> positions = boundary_positions();

  // (a) Every boundary position as a 1-token decode step, all in one mixed batch.
  {
    std::vector<Entry> batch;
    for (size_t i = 0; i < positions.size(); ++i) {
      batch.push_back({0, positions[i], 1});
      if (i % 5 == 0) batch.push_back(random_other(rng, h, false));
    }
    out.push_back({Part::decode, batch});
  }
  // (b) One decode step of the target at a random slot of a decode batch of n sequences.
  for (int n : {1, 2, 3, 5, 7, 16, 33, 64, 128, 255}) {
    std::vector<Entry> batch;
    const int slot = int(rng() % uint32_t(n));
    const int p = positions[rng() % positions.size()];
    for (int i = 0; i < n; ++i)
      batch.push_back(i == slot ? Entry{0, p, 1} : random_other(rng, h, true));
    out.push_back({Part::batch_size, batch});
  }
  // (c) Every chunking of the prompt: all chunks as sequences of one step, with neighbours.
  std::vector<std::vector<int>> chunkings;
  for (int c : {1, 2, 3, 5, 7, 16, 17, 63, 64, 65, 100, 255, 256, 257, 511, 1000, kTargetLen}) {
    chunkings.push_back(std::vector<int>(size_t(kTargetLen + c - 1) / size_t(c), c));
  }
  std::vector<int> ragged;
  for (int left = kTargetLen; left > 0;) {
    const int c = std::min(left, 1 + int(rng() % 400));
    ragged.push_back(c);
    left -= c;
  }
  chunkings.push_back(ragged);
  for (const auto& chunks : chunkings) {
    std::vector<Entry> batch;
    int start = 0;
    for (size_t i = 0; i < chunks.size(); ++i) {
      const int c = std::min(chunks[i], kTargetLen - start);
      batch.push_back({0, start, c});
      start += c;
      if (i % 4 == 1) batch.push_back(random_other(rng, h, false));
    }
    out.push_back({Part::chunking, batch});
  }
  // (d) Prefills of many lengths (the first n tokens), one step.
  {
    std::vector<Entry> batch;
    for (int n : {1, 2, 63, 64, 65, 255, 256, 257, 700, 1500, 2099}) {
      batch.push_back({0, 0, n});
      batch.push_back(random_other(rng, h, false));
    }
    out.push_back({Part::prefix, batch});
  }
  return out;
}

void invariance_suite(Harness& h, KernelMode mode, const std::vector<uint16_t>& ref, Diffs& d) {
  const int64_t row = int64_t(h.shape().hq) * h.shape().d;
  for (const SuiteBatch& sb : suite_batches(h)) {
    BatchOut b;
    h.run(sb.batch, mode, b);
    switch (sb.part) {
      case Part::decode:
        expect_all_finite(b.out, "decode batch");
        d.decode += count_target_diffs(b, sb.batch, ref, row, &d.decode_n);
        break;
      case Part::batch_size:
        d.batch += count_target_diffs(b, sb.batch, ref, row, &d.batch_n);
        break;
      case Part::chunking:
        expect_all_finite(b.out, "chunked prefill");
        d.chunk += count_target_diffs(b, sb.batch, ref, row, &d.chunk_n);
        break;
      case Part::prefix:
        d.prefix += count_target_diffs(b, sb.batch, ref, row, &d.prefix_n);
        break;
    }
  }
}

void print_diffs(const char* shape, KernelMode mode, const Diffs& d) {
  std::printf(
      "%-13s %-9s differing rows: decode %lld/%lld, batch sizes %lld/%lld, chunkings "
      "%lld/%lld, prefix prefills %lld/%lld\n",
      shape, kernel_mode_name(mode), (long long)d.decode, (long long)d.decode_n, (long long)d.batch,
      (long long)d.batch_n, (long long)d.chunk, (long long)d.chunk_n, (long long)d.prefix,
      (long long)d.prefix_n);
}

TEST_P(AttentionCuda, TargetRowsAreBitIdenticalInEveryBatchAndChunking) {
  REQUIRE_GPU();
  const AttnShape sh = GetParam();
  Harness h(sh, 16, test_lengths(), 1);
  ASSERT_TRUE(h.ok());
  BatchOut ref;
  h.run({{0, 0, kTargetLen}}, KernelMode::invariant, ref);
  expect_all_finite(ref.out, "reference prefill");
  Diffs d;
  invariance_suite(h, KernelMode::invariant, ref.out, d);
  print_diffs(sh.name, KernelMode::invariant, d);
  EXPECT_EQ(d.total(), 0);
  EXPECT_GT(d.decode_n + d.batch_n + d.chunk_n + d.prefix_n, 40000);
}

TEST_P(AttentionCuda, CacheBlockSizeDoesNotChangeBits) {
  REQUIRE_GPU();
  const AttnShape sh = GetParam();
  const int64_t row = int64_t(sh.hq) * sh.d;
  std::vector<uint16_t> ref;
  for (int bs : {16, 1, 7, 64, 100}) {
    Harness h(sh, bs, test_lengths(), uint64_t(bs));
    ASSERT_TRUE(h.ok());
    BatchOut full;
    h.run({{0, 0, kTargetLen}}, KernelMode::invariant, full);
    if (ref.empty()) ref = full.out;
    int64_t n = 0;
    const std::vector<Entry> one{{0, 0, kTargetLen}};
    int64_t diffs = count_target_diffs(full, one, ref, row, &n);
    std::vector<Entry> batch;
    for (int p : boundary_positions()) batch.push_back({0, p, 1});
    for (int s = 0; s < kTargetLen; s += 300)
      batch.push_back({0, s, std::min(300, kTargetLen - s)});
    BatchOut b;
    h.run(batch, KernelMode::invariant, b);
    diffs += count_target_diffs(b, batch, ref, row, &n);
    std::printf("%-13s block size %3d: differing rows %lld/%lld\n", sh.name, bs, (long long)diffs,
                (long long)n);
    EXPECT_EQ(diffs, 0) << "block size " << bs;
  }
}

TEST_P(AttentionCuda, NegativeControlFastModeRowsChangeWithTheBatch) {
  REQUIRE_GPU();
  const AttnShape sh = GetParam();
  Harness h(sh, 16, test_lengths(), 1);
  ASSERT_TRUE(h.ok());
  BatchOut ref;
  h.run({{0, 0, kTargetLen}}, KernelMode::fast, ref);
  Diffs d;
  invariance_suite(h, KernelMode::fast, ref.out, d);
  print_diffs(sh.name, KernelMode::fast, d);
  // Part (a) may match (with ~50 decode sequences in its step, fast mode picks one split, as in
  // prefill); the batch-size sweep must not.
  EXPECT_GT(d.batch, 0) << "fast mode: batch size never changed a row: the test cannot see it";
  EXPECT_GT(d.total(), 0);
}

// The planner may put several consecutive splits in one CTA (chosen from the load); forcing
// 1, 2, 3, 7 and 64 splits per CTA must leave every bit in place (R5).
TEST_P(AttentionCuda, SplitGroupingDoesNotChangeBits) {
  REQUIRE_GPU();
  const AttnShape sh = GetParam();
  const int64_t row = int64_t(sh.hq) * sh.d;
  Harness h(sh, 16, test_lengths(), 1);
  ASSERT_TRUE(h.ok());
  BatchOut ref;
  h.run({{0, 0, kTargetLen}}, KernelMode::invariant, ref);
  std::vector<Entry> batch;
  std::mt19937 rng(8);
  for (int p : boundary_positions()) batch.push_back({0, p, 1});
  for (int s = 0; s + 16 <= kTargetLen; s += 160) batch.push_back({0, s, 16});  // 48-64 rows
  for (int i = 0; i < 20; ++i) batch.push_back(random_other(rng, h, true));
  for (int group : {1, 2, 3, 7, 64, 0}) {
    h.attention().set_split_group(group);
    BatchOut b;
    h.run(batch, KernelMode::invariant, b);
    int64_t n = 0;
    const int64_t diffs = count_target_diffs(b, batch, ref.out, row, &n);
    std::printf("%-13s splits per CTA %2d: differing rows %lld/%lld (%lld CTAs, %lld split CTAs)\n",
                sh.name, group, (long long)diffs, (long long)n, (long long)b.stats.ctas,
                (long long)b.stats.split_ctas);
    EXPECT_EQ(diffs, 0) << "splits per CTA " << group;
  }
}

// Small mixed step in both modes covering every path (split CTAs + merge, whole-row CTAs,
// several row blocks, fast-mode splits): the target of compute-sanitizer memcheck in
// scripts/gpu-check.
TEST_P(AttentionCuda, SanitizerSmokeEveryPath) {
  REQUIRE_GPU();
  const AttnShape sh = GetParam();
  Harness h(sh, 16, test_lengths(), 1);
  ASSERT_TRUE(h.ok());
  const std::vector<Entry> batch{{1, 0, 1},   {1, 768, 1}, {1, 2000, 3}, {0, 0, 129},
                                 {0, 300, 7}, {1, 0, 600}, {1, 5124, 1}};
  for (KernelMode mode : {KernelMode::invariant, KernelMode::fast}) {
    BatchOut b;
    h.run(batch, mode, b);
    expect_all_finite(b.out, kernel_mode_name(mode));
    EXPECT_GT(b.stats.merge_ctas, 0);
  }
}

// ---- the wgmma kernel against the mma.sync kernel, bit for bit --------------------------------

// Where two outputs of the same batch differ, for diagnosis on the GPU machine: how many rows and
// elements, how far apart (ulps of bf16), and how the differing rows spread over what could cause
// them. A wgmma layout or descriptor error shows in one dim half (V's second N atom), one
// warpgroup, warp or 8-row half of a warp's fragment, or in the tile holding a CTA's last position
// (the cp.async path); unsynchronised shared memory as NaN or large values; a k-order difference of
// the tensor cores as 1-2 ulp spread everywhere.
struct DiffReport {
  int64_t rows = 0, rows_compared = 0, elems = 0, nonfinite = 0;
  int max_ulp = 0;
  int64_t ulp_hist[4] = {};      // differing elements by |ulp|: 1, 2-3, 4-255, >= 256
  int64_t dim_half[2] = {};      // differing elements in dims [0, 64) and [64, 128)
  int64_t warpgroup[2] = {};     // differing rows by warpgroup of a 128-row CTA: (r % 128) / 64
  int64_t warp[4] = {};          // by warp of the warpgroup: (r % 64) / 16
  int64_t frag_half[2] = {};     // by half of the warp's 16 rows: (r % 16) / 8 (lane / 4 or + 8)
  int64_t tile_quarter[4] = {};  // by the row's position in its tile: (pos % 64) / 16
  int64_t last_tile = 0;         // rows whose own tile is the last of their sequence's chunk
  int64_t split_rows = 0;        // rows of sequences planned as split items (<= 64 rows, > 4 tiles)
  std::vector<std::string> first;

  static int ordered(uint16_t h) { return (h & 0x8000u) ? -int(h & 0x7fffu) : int(h); }

  void add(const BatchOut& a, const BatchOut& b, const std::vector<Entry>& batch,
           const AttnShape& sh, const char* where) {
    const int G = sh.hq / sh.hkv;
    for (size_t s = 0; s < batch.size(); ++s) {
      const Entry& e = batch[s];
      const bool split = e.q_len * G <= kAttnRowsPerCta &&
                         (e.q_start + e.q_len + kAttnKvTile - 1) / kAttnKvTile > kAttnSplitTiles;
      for (int t = 0; t < e.q_len; ++t) {
        const int64_t tok = a.q_indptr[s] + t;
        const int pos = e.q_start + t;
        for (int h = 0; h < sh.hq; ++h) {
          ++rows_compared;
          const int64_t base = (tok * sh.hq + h) * sh.d;
          int n = 0, worst = 0, first_dim = -1;
          for (int j = 0; j < sh.d; ++j) {
            const uint16_t x = a.out[size_t(base + j)], y = b.out[size_t(base + j)];
            if (x == y) continue;
            ++n;
            if (first_dim < 0) first_dim = j;
            if ((x & 0x7f80u) == 0x7f80u || (y & 0x7f80u) == 0x7f80u) ++nonfinite;
            const int u = std::abs(ordered(x) - ordered(y));
            worst = std::max(worst, u);
            ++ulp_hist[u <= 1 ? 0 : u <= 3 ? 1 : u <= 255 ? 2 : 3];
            ++dim_half[j / 64];
          }
          if (!n) continue;
          ++rows;
          elems += n;
          max_ulp = std::max(max_ulp, worst);
          const int r = t * G + h % G;  // the row within its sequence and kv head
          ++warpgroup[(r % 128) / 64];
          ++warp[(r % 64) / 16];
          ++frag_half[(r % 16) / 8];
          ++tile_quarter[(pos % 64) / 16];
          last_tile += pos / 64 == (e.q_start + e.q_len - 1) / 64;
          split_rows += split;
          if (first.size() < 8) {
            char buf[256];
            std::snprintf(buf, sizeof(buf),
                          "%s: seq %zu (id %d, q %d+%d) pos %d q head %d (kv %d, row %d): %d dims "
                          "differ from dim %d, max %d ulp",
                          where, s, e.id, e.q_start, e.q_len, pos, h, h / G, r, n, first_dim,
                          worst);
            first.push_back(buf);
          }
        }
      }
    }
  }

  std::string str() const {
    char buf[1024];
    std::snprintf(
        buf, sizeof(buf),
        "%lld of %lld rows differ (%lld elements, %lld non-finite, max %d ulp; ulps 1: %lld, "
        "2-3: %lld, 4-255: %lld, >=256: %lld)\n  elements by dim half %lld / %lld; rows by "
        "warpgroup %lld / %lld, by warp %lld %lld %lld %lld, by fragment half %lld / %lld, by "
        "tile quarter %lld %lld %lld %lld, in the chunk's last tile %lld, of split sequences %lld",
        (long long)rows, (long long)rows_compared, (long long)elems, (long long)nonfinite, max_ulp,
        (long long)ulp_hist[0], (long long)ulp_hist[1], (long long)ulp_hist[2],
        (long long)ulp_hist[3], (long long)dim_half[0], (long long)dim_half[1],
        (long long)warpgroup[0], (long long)warpgroup[1], (long long)warp[0], (long long)warp[1],
        (long long)warp[2], (long long)warp[3], (long long)frag_half[0], (long long)frag_half[1],
        (long long)tile_quarter[0], (long long)tile_quarter[1], (long long)tile_quarter[2],
        (long long)tile_quarter[3], (long long)last_tile, (long long)split_rows);
    std::string out = buf;
    for (const std::string& f : first) out += "\n  " + f;
    return out;
  }
};

const char* part_name(Part p) {
  switch (p) {
    case Part::decode:
      return "decode";
    case Part::batch_size:
      return "batch size";
    case Part::chunking:
      return "chunking";
    case Part::prefix:
      return "prefix";
  }
  return "?";
}

// Every batch of the invariance suite, both modes: the wgmma kernel (prefill only, then split items
// too), in each of its schedules (attention.h, WgmmaPipeline), gives every row of every batch the
// mma.sync kernel's bits.
TEST_P(AttentionCuda, WgmmaGivesTheBitsOfMmaSyncOnEveryBatch) {
  REQUIRE_GPU();
  const AttnShape sh = GetParam();
  Harness h(sh, 16, test_lengths(), 1);
  ASSERT_TRUE(h.ok());
  USE_KERNELS(h, kWgmmaAll);
  const std::vector<SuiteBatch> batches = suite_batches(h);
  constexpr WgmmaPipeline kPipelines[] = {WgmmaPipeline::serial, WgmmaPipeline::overlap,
                                          WgmmaPipeline::pingpong, WgmmaPipeline::lean};
  constexpr int kPipes = int(std::size(kPipelines));
  constexpr int kRuns = 2 * kPipes;  // (prefill only, all) x pipelines
  for (KernelMode mode : {KernelMode::invariant, KernelMode::fast}) {
    DiffReport rep[kRuns];
    int64_t wgmma_ctas[kRuns] = {};
    for (size_t i = 0; i < batches.size(); ++i) {
      BatchOut ref;
      STATUS_OK(h.set_kernels(kMmaSync.prefill, kMmaSync.split));
      h.run(batches[i].batch, mode, ref);
      int c = 0;
      for (const KernelConfig& cfg : {kWgmmaPrefill, kWgmmaAll}) {
        for (WgmmaPipeline pipe : kPipelines) {
          STATUS_OK(h.set_kernels(cfg.prefill, cfg.split));
          h.attention().set_wgmma_pipeline(pipe);
          BatchOut b;
          h.run(batches[i].batch, mode, b);
          expect_all_finite(b.out, cfg.name);
          wgmma_ctas[c] += b.stats.wgmma_ctas;
          const std::string where = std::string(part_name(batches[i].part)) + " batch " +
                                    std::to_string(i) + " (" + cfg.name + ", " +
                                    wgmma_pipeline_name(pipe) + ")";
          rep[c++].add(ref, b, batches[i].batch, sh, where.c_str());
        }
      }
    }
    h.attention().set_wgmma_pipeline(WgmmaPipeline::pingpong);
    for (int c = 0; c < kRuns; ++c) {
      const KernelConfig& cfg = c < kPipes ? kWgmmaPrefill : kWgmmaAll;
      const char* pipe = wgmma_pipeline_name(kPipelines[c % kPipes]);
      std::printf("%-13s %-9s %-13s %-8s vs mma_sync (%lld wgmma CTAs): %s\n", sh.name,
                  kernel_mode_name(mode), cfg.name, pipe, (long long)wgmma_ctas[c],
                  rep[c].str().c_str());
      EXPECT_EQ(rep[c].rows, 0) << cfg.name << ", " << pipe << ", " << kernel_mode_name(mode)
                                << ": " << rep[c].str();
      EXPECT_GT(rep[c].rows_compared, 40000);
      EXPECT_GT(wgmma_ctas[c], 0);
    }
  }
}

// Every batch of the invariance suite, both modes: spread CTAs (four warps share the tiles of an
// item of <= 16 rows) give every row the bits of one-warp CTAs, on the mma.sync kernel.
TEST_P(AttentionCuda, SpreadCtasGiveTheBitsOfOneWarpOnEveryBatch) {
  REQUIRE_GPU();
  const AttnShape sh = GetParam();
  Harness h(sh, 16, test_lengths(), 1);
  ASSERT_TRUE(h.ok());
  USE_KERNELS(h, kMmaSync);
  const std::vector<SuiteBatch> batches = suite_batches(h);
  for (KernelMode mode : {KernelMode::invariant, KernelMode::fast}) {
    DiffReport rep;
    int64_t spread_ctas = 0;
    for (size_t i = 0; i < batches.size(); ++i) {
      BatchOut ref, b;
      h.attention().set_spread_ctas(false);
      h.run(batches[i].batch, mode, ref);
      EXPECT_EQ(ref.stats.spread_ctas, 0);
      h.attention().set_spread_ctas(true);
      h.run(batches[i].batch, mode, b);
      expect_all_finite(b.out, "spread");
      spread_ctas += b.stats.spread_ctas;
      const std::string where =
          std::string(part_name(batches[i].part)) + " batch " + std::to_string(i) + " (spread)";
      rep.add(ref, b, batches[i].batch, sh, where.c_str());
    }
    std::printf("%-13s %-9s spread vs one-warp CTAs (%lld spread CTAs): %s\n", sh.name,
                kernel_mode_name(mode), (long long)spread_ctas, rep.str().c_str());
    EXPECT_EQ(rep.rows, 0) << kernel_mode_name(mode) << ": " << rep.str();
    EXPECT_GT(rep.rows_compared, 40000);
    EXPECT_GT(spread_ctas, 1000);
  }
}

// Every batch of the invariance suite, both modes: merges folded into the attention launch (the
// last split CTA of a sequence and kv head merges) and either load depth give every row the bits
// of the merge launch with two stages (the path before both), on the mma.sync kernel.
TEST_P(AttentionCuda, FusedMergesAndLoadStagesGiveTheBitsOfTheMergeLaunch) {
  REQUIRE_GPU();
  const AttnShape sh = GetParam();
  Harness h(sh, 16, test_lengths(), 1);
  ASSERT_TRUE(h.ok());
  USE_KERNELS(h, kMmaSync);
  const std::vector<SuiteBatch> batches = suite_batches(h);
  struct Path {
    const char* name;
    MergePlacement merges;
    int stages;
    bool scores_ahead = false;  // CudaAttention::set_scores_ahead
  };
  constexpr Path kPaths[] = {{"fused, 2 stages", MergePlacement::fused, 2},
                             {"fused, 4 stages", MergePlacement::fused, 4},
                             {"merge launch, 4 stages", MergePlacement::own_launch, 4},
                             {"as planned", MergePlacement::per_step, 0},
                             {"4 stages, scores ahead", MergePlacement::own_launch, 4, true},
                             {"planned, scores ahead", MergePlacement::per_step, 0, true}};
  for (KernelMode mode : {KernelMode::invariant, KernelMode::fast}) {
    DiffReport rep[std::size(kPaths)];
    int64_t fused_steps[std::size(kPaths)] = {};
    for (size_t i = 0; i < batches.size(); ++i) {
      BatchOut ref;
      h.attention().set_merge_placement(MergePlacement::own_launch);
      STATUS_OK(h.attention().set_load_stages(2));
      h.attention().set_scores_ahead(false);
      h.run(batches[i].batch, mode, ref);
      EXPECT_FALSE(ref.stats.merge_fused);
      EXPECT_EQ(ref.stats.load_stages, 2);
      for (size_t c = 0; c < std::size(kPaths); ++c) {
        h.attention().set_merge_placement(kPaths[c].merges);
        STATUS_OK(h.attention().set_load_stages(kPaths[c].stages));
        h.attention().set_scores_ahead(kPaths[c].scores_ahead);
        BatchOut b;
        h.run(batches[i].batch, mode, b);
        expect_all_finite(b.out, kPaths[c].name);
        if (kPaths[c].stages) EXPECT_EQ(b.stats.load_stages, kPaths[c].stages);
        fused_steps[c] += b.stats.merge_fused;
        const std::string where = std::string(part_name(batches[i].part)) + " batch " +
                                  std::to_string(i) + " (" + kPaths[c].name + ")";
        rep[c].add(ref, b, batches[i].batch, sh, where.c_str());
      }
    }
    h.attention().set_merge_placement(MergePlacement::per_step);
    STATUS_OK(h.attention().set_load_stages(0));
    h.attention().set_scores_ahead(false);
    for (size_t c = 0; c < std::size(kPaths); ++c) {
      std::printf("%-13s %-9s %-22s vs merge launch, 2 stages (%lld fused steps): %s\n", sh.name,
                  kernel_mode_name(mode), kPaths[c].name, (long long)fused_steps[c],
                  rep[c].str().c_str());
      EXPECT_EQ(rep[c].rows, 0) << kPaths[c].name << ", " << kernel_mode_name(mode) << ": "
                                << rep[c].str();
      EXPECT_GT(rep[c].rows_compared, 40000);
      if (kPaths[c].merges == MergePlacement::fused) EXPECT_GT(fused_steps[c], 10);
    }
  }
}

// R3 across kernels: decode steps and split chunks on mma.sync give the rows of one wgmma prefill
// of the whole target, in every batch and chunking of the suite.
TEST_P(AttentionCuda, TargetRowsOfWgmmaPrefillAreBitIdenticalInEveryBatchAndChunking) {
  REQUIRE_GPU();
  const AttnShape sh = GetParam();
  Harness h(sh, 16, test_lengths(), 1);
  ASSERT_TRUE(h.ok());
  USE_KERNELS(h, kWgmmaPrefill);
  BatchOut ref;
  h.run({{0, 0, kTargetLen}}, KernelMode::invariant, ref);
  expect_all_finite(ref.out, "reference wgmma prefill");
  EXPECT_EQ(ref.stats.wgmma_ctas, ref.stats.ctas);
  Diffs d;
  invariance_suite(h, KernelMode::invariant, ref.out, d);
  print_diffs(sh.name, KernelMode::invariant, d);
  EXPECT_EQ(d.total(), 0);
}

// Block sizes of every producer path: TMA boxes of a page (8, 16, 32) or of 64 rows of a page
// (64, 128), and cp.async for every tile (1, 7, 100); all against mma.sync at block size 16.
TEST_P(AttentionCuda, WgmmaCacheBlockSizesDoNotChangeBits) {
  REQUIRE_GPU();
  const AttnShape sh = GetParam();
  const int64_t row = int64_t(sh.hq) * sh.d;
  std::vector<uint16_t> ref;
  {
    Harness h(sh, 16, test_lengths(), 16);
    ASSERT_TRUE(h.ok());
    BatchOut full;
    h.run({{0, 0, kTargetLen}}, KernelMode::invariant, full);
    ref = full.out;
  }
  for (int bs : {16, 8, 32, 64, 128, 1, 7, 100}) {
    Harness h(sh, bs, test_lengths(), uint64_t(bs));
    ASSERT_TRUE(h.ok());
    USE_KERNELS(h, kWgmmaAll);
    std::vector<Entry> batch{{0, 0, kTargetLen}};
    for (int p : boundary_positions()) batch.push_back({0, p, 1});
    for (int s = 0; s < kTargetLen; s += 300)
      batch.push_back({0, s, std::min(300, kTargetLen - s)});
    batch.push_back({1, 0, 5125});
    BatchOut b, m;
    h.run(batch, KernelMode::invariant, b);
    expect_all_finite(b.out, "wgmma");
    int64_t n = 0;
    const int64_t diffs = count_target_diffs(b, batch, ref, row, &n);
    STATUS_OK(h.set_kernels(kMmaSync.prefill, kMmaSync.split));
    h.run(batch, KernelMode::invariant, m);
    DiffReport rep;
    rep.add(m, b, batch, sh, ("block size " + std::to_string(bs)).c_str());
    std::printf(
        "%-13s wgmma, block size %3d: target rows differing from mma_sync's prefill "
        "%lld/%lld; whole batch vs mma_sync: %s\n",
        sh.name, bs, (long long)diffs, (long long)n, rep.str().c_str());
    EXPECT_EQ(diffs, 0) << "block size " << bs;
    EXPECT_EQ(rep.rows, 0) << "block size " << bs << ": " << rep.str();
  }
}

TEST_P(AttentionCuda, WgmmaSplitGroupingDoesNotChangeBits) {
  REQUIRE_GPU();
  const AttnShape sh = GetParam();
  const int64_t row = int64_t(sh.hq) * sh.d;
  Harness h(sh, 16, test_lengths(), 1);
  ASSERT_TRUE(h.ok());
  BatchOut ref;
  h.run({{0, 0, kTargetLen}}, KernelMode::invariant, ref);  // mma.sync
  USE_KERNELS(h, kWgmmaAll);
  std::vector<Entry> batch;
  std::mt19937 rng(8);
  for (int p : boundary_positions()) batch.push_back({0, p, 1});
  for (int s = 0; s + 16 <= kTargetLen; s += 160) batch.push_back({0, s, 16});  // 48-64 rows
  for (int i = 0; i < 20; ++i) batch.push_back(random_other(rng, h, true));
  for (int group : {1, 2, 3, 7, 64, 0}) {
    h.attention().set_split_group(group);
    BatchOut b;
    h.run(batch, KernelMode::invariant, b);
    int64_t n = 0;
    const int64_t diffs = count_target_diffs(b, batch, ref.out, row, &n);
    std::printf(
        "%-13s wgmma, splits per CTA %2d: differing rows %lld/%lld (%lld CTAs, %lld "
        "split CTAs, %lld wgmma CTAs)\n",
        sh.name, group, (long long)diffs, (long long)n, (long long)b.stats.ctas,
        (long long)b.stats.split_ctas, (long long)b.stats.wgmma_ctas);
    EXPECT_EQ(diffs, 0) << "splits per CTA " << group;
    EXPECT_EQ(b.stats.wgmma_ctas, b.stats.ctas);
  }
}

// Every path of the wgmma kernel once, small (compute-sanitizer memcheck in scripts/gpu-check):
// whole-row CTAs with one and two consumer warpgroups, TMA tiles and the cp.async tail tile, split
// CTAs writing states for the merge, fast mode's unsplit prefill, and a block size that takes the
// cp.async path for every tile.
TEST_P(AttentionCuda, SanitizerSmokeWgmma) {
  REQUIRE_GPU();
  const AttnShape sh = GetParam();
  for (int bs : {16, 7}) {
    Harness h(sh, bs, test_lengths(), 1);
    ASSERT_TRUE(h.ok());
    USE_KERNELS(h, kWgmmaAll);
    const std::vector<Entry> batch{{1, 0, 1},   {1, 768, 1}, {1, 2000, 3}, {0, 0, 129},
                                   {0, 300, 7}, {1, 0, 600}, {1, 5124, 1}, {0, 100, 40}};
    for (KernelMode mode : {KernelMode::invariant, KernelMode::fast}) {
      BatchOut b;
      h.run(batch, mode, b);
      expect_all_finite(b.out, kernel_mode_name(mode));
      EXPECT_GT(b.stats.merge_ctas, 0);
      EXPECT_EQ(b.stats.wgmma_ctas, b.stats.ctas);
    }
  }
}

TEST(AttentionCudaPlan, RejectsBadShapesWithActionableErrors) {
  REQUIRE_GPU();
  auto created = CudaAttention::create(0);
  ASSERT_TRUE(created.ok());
  std::vector<int32_t> q_indptr{0, 4}, kv_lens{3};
  AttentionPlan hp;
  hp.num_seqs = 1;
  hp.q_indptr = q_indptr.data();
  hp.kv_lens = kv_lens.data();
  hp.block_size = 16;
  Status s = (*created)->plan(hp, {8, 2, 128, 0.1f}, KernelMode::invariant, nullptr);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("kv_len"), std::string::npos) << s.message();
  kv_lens[0] = 4;
  s = (*created)->plan(hp, {8, 2, 96, 0.1f}, KernelMode::invariant, nullptr);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("head_dim"), std::string::npos) << s.message();
}

INSTANTIATE_TEST_SUITE_P(Shapes, AttentionCuda, ::testing::Values(kSmol, kQwen3),
                         [](const ::testing::TestParamInfo<AttnShape>& i) {
                           return std::string(i.param.hq == 9 ? "SmolLM2" : "Qwen3_8B");
                         });

}  // namespace
}  // namespace invar::kernels::cuda
