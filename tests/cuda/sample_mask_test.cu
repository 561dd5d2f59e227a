// Structured output on the GPU: sample_rows under allowed-token bitmasks (kernels/cuda/ops.h)
// against the engine's host sampler over a copy of the row whose disallowed logits are -inf
// (engine/sampler.cpp, what the engine does without device draws), on random rows at several
// batch sizes, masked and unmasked rows mixed.
//   R = rows, V = vocab, W = ceil(V / 32) mask words
// 1. The token: greedy rows give the host's token always; sampled rows (seeded, T, top-k, top-p,
//    min-p) give it except where u * total falls within rounding of a boundary of the kept mass
//    (the host sums in another order: the relationship ops_test's SampleRows test keeps for
//    unmasked rows). A row's token is the same bits at every batch size.
// 2. The logprob: the drawn logit is the raw row's, the logits are not written, and
//    logit_summary's log_z is the unmasked row's: raw logit - log_z has the bits the host path
//    reports.
// 3. Control: the same rows and uniforms without their masks draw disallowed tokens (every
//    masked row's argmax is disallowed), so the test sees whether the masks act.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <vector>

#include "engine/philox.h"
#include "engine/sampler.h"
#include "kernels/cuda/ops.h"
#include "test_util.cuh"

namespace invar::kernels::cuda {
namespace {

using namespace cudatest;
using bf16 = __nv_bfloat16;

// The engine's sampling parameters for row r, cycling through greedy and the filters.
engine::SamplingParams params_of(int r) {
  static const engine::SamplingParams kConfigs[] = {
      {0.0f, 0, 1.0f, 0.0f, 0},  {1.0f, 0, 1.0f, 0.0f, 0},  {0.8f, 0, 0.95f, 0.0f, 0},
      {0.7f, 50, 1.0f, 0.0f, 0}, {1.3f, 0, 1.0f, 0.05f, 0}, {0.8f, 40, 0.9f, 0.02f, 0}};
  engine::SamplingParams p = kConfigs[r % 6];
  p.seed = 1000 + uint64_t(r);
  return p;
}
uint64_t position_of(int r) {
  return 17 + 3 * uint64_t(r);
}

// As the engine fills a draw (engine.cpp): 1 / T, the filters, Philox's uniform; greedy: none.
SampleRowParams device_params(int r, int32_t mask) {
  const engine::SamplingParams p = params_of(r);
  SampleRowParams d;
  if (p.temperature > 0.0f)
    d = {1.0f / p.temperature, p.top_k, p.top_p, p.min_p,
         engine::philox_uniform(p.seed, position_of(r))};
  d.mask = mask;
  return d;
}

bool allowed(const std::vector<int32_t>& words, size_t row, int64_t w, int64_t j) {
  return (uint32_t(words[row * size_t(w) + size_t(j / 32)]) >> (j % 32)) & 1u;
}

// Whether the host's draw on `x` (f32, disallowed at -inf) lies within rounding of a boundary:
// its kept set (engine/sampler.cpp's rules) walked in id order against u * total, and the top-p
// cut against its target. Only there may the device pick another token: it sums in another
// order (in doubles), and CUDA's expf may differ from the host's by up to 2 ulp (2.4e-7 of each
// weight, so of any partial sum): kRounding bounds both.
constexpr double kRounding = 3e-7;
bool near_boundary(const std::vector<float>& x, const engine::SamplingParams& p, float u) {
  const int v = int(x.size());
  const int best = int(std::max_element(x.begin(), x.end()) - x.begin());
  std::vector<double> w(x.size());
  std::vector<int32_t> kept;
  for (int j = 0; j < v; ++j) {
    w[size_t(j)] = std::exp((x[size_t(j)] - x[size_t(best)]) * (1.0f / p.temperature));
    if (float(w[size_t(j)]) >= p.min_p && w[size_t(j)] > 0) kept.push_back(j);
  }
  std::sort(kept.begin(), kept.end(), [&](int32_t a, int32_t b) {
    return x[size_t(a)] != x[size_t(b)] ? x[size_t(a)] > x[size_t(b)] : a < b;
  });
  if (p.top_k > 0 && size_t(p.top_k) < kept.size()) kept.resize(size_t(p.top_k));
  bool near = false;
  if (p.top_p < 1.0f) {
    double mass = 0, cum = 0;
    for (int32_t j : kept) mass += w[size_t(j)];
    const double target = double(p.top_p) * mass;
    size_t n = 0;
    while (n < kept.size()) {
      cum += w[size_t(kept[n++])];
      near |= std::fabs(cum - target) < kRounding * mass;
      if (cum >= target) break;
    }
    kept.resize(n);
  }
  std::sort(kept.begin(), kept.end());
  double total = 0, cum = 0;
  for (int32_t j : kept) total += w[size_t(j)];
  for (int32_t j : kept) {
    cum += w[size_t(j)];
    near |= std::fabs(double(u) * total - cum) < kRounding * total;
  }
  return near;
}

TEST(SampleMask, MaskedDrawIsTheHostDrawOverTheMaskedCopyAndKeepsRawLogprobs) {
  REQUIRE_GPU();
  constexpr int kRows = 97;
  for (int64_t cols : {769, 49152, 151936}) {
    const int64_t w = token_mask_words(cols);
    // Random logits with a few high ones and many ties (bf16), spread enough that the unmasked
    // draws wander over the row.
    std::vector<uint16_t> x(size_t(kRows * cols));
    for (size_t i = 0; i < x.size(); ++i) x[i] = bf16_bits(6.0f * uniform(uint64_t(cols), i));
    for (int r = 0; r < kRows; ++r)
      for (int k = 0; k < 4; ++k)
        x[size_t(r * cols) + mix(uint64_t(r), uint64_t(k)) % size_t(cols)] = bf16_bits(8.0f + k);
    // Every fifth row has no mask; the others allow from one token to about half the row, and
    // never the row's argmax, so that greedy must move.
    std::vector<int32_t> mask_of(kRows, -1), words;
    for (int r = 0; r < kRows; ++r) {
      if (r % 5 == 4) continue;
      mask_of[size_t(r)] = int32_t(words.size() / size_t(w));
      const size_t base = words.size();
      words.resize(base + size_t(w), 0);
      const uint32_t density = uint32_t(1 + r % 4);  // 1 in 2^density tokens, or one token
      for (int64_t j = 0; j < cols; ++j)
        if (r % 7 != 3 && mix(uint64_t(r) << 20, uint64_t(j)) % (1u << density) == 0)
          words[base + size_t(j / 32)] |= int32_t(1u << (j % 32));
      const uint16_t* row = x.data() + size_t(r) * size_t(cols);
      int64_t top = 0;
      for (int64_t j = 1; j < cols; ++j)
        if (bf16_value(row[j]) > bf16_value(row[top])) top = j;
      words[base + size_t(top / 32)] &= int32_t(~(1u << (top % 32)));
      const int64_t one = (top + 1 + mix(uint64_t(r), 99) % uint64_t(cols - 1)) % cols;
      words[base + size_t(one / 32)] |= int32_t(1u << (one % 32));  // never empty
    }

    // The host: the engine's sampler over the widened row, disallowed at -inf.
    std::vector<int32_t> host(kRows);
    std::vector<bool> may_differ(kRows, false);
    engine::Sampler sampler;
    for (int r = 0; r < kRows; ++r) {
      std::vector<float> row(static_cast<size_t>(cols));
      for (int64_t j = 0; j < cols; ++j) row[size_t(j)] = bf16_value(x[size_t(r * cols + j)]);
      if (mask_of[size_t(r)] >= 0)
        engine::mask_to_allowed(row.data(), int(cols),
                                words.data() + size_t(mask_of[size_t(r)]) * w);
      const engine::SamplingParams p = params_of(r);
      host[size_t(r)] = sampler.sample(row.data(), int(cols), p, position_of(r));
      if (p.temperature > 0.0f)
        may_differ[size_t(r)] =
            near_boundary(row, p, engine::philox_uniform(p.seed, position_of(r)));
    }

    DeviceBuffer dx = upload(x), dm = upload(words);
    std::vector<int32_t> first;  // the whole batch's tokens: every smaller one must repeat them
    for (int batch : {kRows, 33, 7, 2, 1}) {
      std::vector<SampleRowParams> params, unmasked;
      for (int r = 0; r < batch; ++r) {
        params.push_back(device_params(r, mask_of[size_t(r)]));
        unmasked.push_back(device_params(r, -1));
      }
      DeviceBuffer dp = upload(params), du = upload(unmasked);
      DeviceBuffer tok = device_buffer(size_t(batch) * 4), lg = device_buffer(size_t(batch) * 4),
                   tok_u = device_buffer(size_t(batch) * 4),
                   lg_u = device_buffer(size_t(batch) * 4), am = device_buffer(size_t(batch) * 4),
                   mx = device_buffer(size_t(batch) * 4), lz = device_buffer(size_t(batch) * 4);
      STATUS_OK(sample_rows(dx.as<bf16>(), cols, batch, cols, dp.as<SampleRowParams>(),
                            dm.as<uint32_t>(), tok.as<int32_t>(), lg.as<float>(), nullptr));
      STATUS_OK(logit_summary(dx.as<bf16>(), cols, batch, cols, am.as<int32_t>(), mx.as<float>(),
                              lz.as<float>(), nullptr));
      STATUS_OK(sample_rows(dx.as<bf16>(), cols, batch, cols, du.as<SampleRowParams>(), nullptr,
                            tok_u.as<int32_t>(), lg_u.as<float>(), nullptr));
      CUDA_OK(cudaDeviceSynchronize());
      const auto got = download<int32_t>(tok.as(), size_t(batch));
      const auto got_logit = download<float>(lg.as(), size_t(batch));
      const auto got_unmasked = download<int32_t>(tok_u.as(), size_t(batch));
      const auto log_z = download<float>(lz.as(), size_t(batch));
      if (first.empty()) first = got;
      int differ = 0, edges = 0, outside_unmasked = 0;
      for (int r = 0; r < batch; ++r) {
        const int32_t t = got[size_t(r)];
        ASSERT_TRUE(t >= 0 && t < cols) << "row " << r;
        const int32_t m = mask_of[size_t(r)];
        if (m >= 0) {
          EXPECT_TRUE(allowed(words, size_t(m), w, t)) << "cols " << cols << " row " << r;
          outside_unmasked += !allowed(words, size_t(m), w, got_unmasked[size_t(r)]);
        }
        if (t != host[size_t(r)]) {
          ++differ;
          edges += may_differ[size_t(r)];
          EXPECT_TRUE(may_differ[size_t(r)])
              << "cols " << cols << " row " << r << " (T " << params_of(r).temperature
              << "): device " << t << ", host " << host[size_t(r)];
        }
        if (r < int(first.size()))
          EXPECT_EQ(t, first[size_t(r)]) << "batch " << batch << " row " << r;
        // The logprob the engine reports, raw logit - log_z: the unmasked row's bits.
        const float raw = bf16_value(x[size_t(r * cols + t)]);
        EXPECT_EQ(std::memcmp(&got_logit[size_t(r)], &raw, 4), 0) << "row " << r;
        const float device_lp = float(double(got_logit[size_t(r)]) - double(log_z[size_t(r)]));
        const float host_lp = float(double(raw) - double(log_z[size_t(r)]));
        EXPECT_EQ(std::memcmp(&device_lp, &host_lp, 4), 0) << "row " << r;
      }
      if (batch == kRows) {
        EXPECT_LE(edges, kRows / 10) << "cols " << cols << ": too many draws near an edge";
        EXPECT_GT(outside_unmasked, kRows / 4) << "cols " << cols << ": the control";
        std::printf(
            "cols %lld: %d rows, %d differ from the host (%d within rounding of an "
            "edge); unmasked, %d masked rows draw a disallowed token\n",
            (long long)cols, batch, differ, edges, outside_unmasked);
      }
    }
    // The logits were only read: a downloaded row (top_logprobs) is the raw one.
    const auto after = download<uint16_t>(dx.as(), x.size());
    EXPECT_EQ(std::memcmp(after.data(), x.data(), x.size() * 2), 0) << "cols " << cols;
  }
}

}  // namespace
}  // namespace invar::kernels::cuda
