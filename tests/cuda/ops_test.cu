// GPU tests of kernels/cuda/ops.h (CTest label `cuda`; run by scripts/gpu-check, and under
// compute-sanitizer memcheck there).
//   R = rows (tokens), H = dim, D = head dim, I = intermediate size, V = vocab
// 1. Each op against a double-precision reference on the host, at awkward sizes (1, 7, 17,
//    769, 5125, primes), strided rows included; outputs are poisoned first.
// 2. RMSNorm invariance (R4), bitwise: rows computed in a batch of n rows at a shifted slot
//    equal the same rows of one 3000-row call, for n = 1..64 and a spread up to 2999.
// 3. Negative control (R8): fast mode (threads per row from the row count) finds differences.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "kernels/cuda/gemm.h"
#include "kernels/cuda/ops.h"
#include "test_util.cuh"

namespace invar::kernels::cuda {
namespace {

using namespace cudatest;
using bf16 = __nv_bfloat16;

std::vector<uint16_t> random_bf16(size_t n, uint64_t seed, float scale) {
  std::vector<uint16_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = bf16_bits(scale * uniform(seed, i));
  return v;
}

bool close_bf16(uint16_t out, double ref, double mag) {
  const double o = bf16_value(out);
  return std::isfinite(o) && std::fabs(o - ref) <= mag * (1.0 / 256) + 1e-6;
}

// ---- RMSNorm --------------------------------------------------------------------------------

enum class NormKind { bf16_in, f32_in, add };
const char* norm_name(NormKind k) {
  return k == NormKind::bf16_in  ? "rmsnorm(bf16)"
         : k == NormKind::f32_in ? "rmsnorm(f32)"
                                 : "rmsnorm_add";
}

// Inputs of a norm call: x (bf16 or f32 residual), delta for the add, weight; host copies and
// device copies (the residual's pristine copy restores it before each add).
struct NormData {
  int64_t rows, dim, ld;
  std::vector<uint16_t> x16, delta, w;
  std::vector<float> x32;
  DeviceBuffer d_x16, d_delta, d_w, d_x32, d_x32_pristine;
  NormData(int64_t r, int64_t d, int64_t ld_, uint64_t seed) : rows(r), dim(d), ld(ld_) {
    x16 = random_bf16(size_t(r * ld_), seed, 2.0f);
    delta = random_bf16(size_t(r * ld_), seed + 1, 1.0f);
    w = random_bf16(size_t(d), seed + 2, 1.0f);
    x32.resize(size_t(r * ld_));
    for (size_t i = 0; i < x32.size(); ++i) x32[i] = 2.0f * uniform(seed + 3, i);
    d_x16 = upload(x16);
    d_delta = upload(delta);
    d_w = upload(w);
    d_x32 = upload(x32);
    d_x32_pristine = upload(x32);
  }
};

// Runs rows [first, first + n) of `data` through the op; returns out [n, dim] (ld = dim) and,
// for the add, the updated residual rows.
void run_norm(const NormData& data, NormKind kind, KernelMode mode, int64_t first, int64_t n,
              std::vector<uint16_t>& out, std::vector<float>& residual) {
  const float eps = 1e-6f;
  DeviceBuffer o = device_buffer(size_t(n * data.dim) * 2);
  poison_bf16(o.as(), n * data.dim);
  const int64_t off = first * data.ld;
  const bf16* w = data.d_w.as<bf16>();
  Status s;
  if (kind == NormKind::bf16_in) {
    s = rmsnorm(data.d_x16.as<bf16>() + off, data.ld, w, n, data.dim, eps, o.as<bf16>(), data.dim,
                mode, nullptr);
  } else if (kind == NormKind::f32_in) {
    s = rmsnorm(data.d_x32.as<float>() + off, data.ld, w, n, data.dim, eps, o.as<bf16>(), data.dim,
                mode, nullptr);
  } else {
    CUDA_OK(cudaMemcpy(data.d_x32.as(), data.d_x32_pristine.as(), data.x32.size() * 4,
                       cudaMemcpyDeviceToDevice));
    s = rmsnorm_add(data.d_x32.as<float>() + off, data.ld, data.d_delta.as<bf16>() + off, data.ld,
                    w, n, data.dim, eps, o.as<bf16>(), data.dim, mode, nullptr);
  }
  ASSERT_TRUE(s.ok()) << s.message();
  CUDA_OK(cudaDeviceSynchronize());
  out = download<uint16_t>(o.as(), size_t(n * data.dim));
  if (kind == NormKind::add)
    residual = download<float>(data.d_x32.as<float>() + off, size_t(n * data.ld));
}

TEST(OpsCuda, RmsnormMatchesF64Reference) {
  REQUIRE_GPU();
  int checked = 0;
  // 12289: more chunks than a thread keeps in registers (the second pass rereads x).
  for (int64_t dim : {1, 7, 17, 64, 128, 576, 769, 4096, 5125, 12289}) {
    for (int64_t rows : {1, 7, 17, 300}) {
      for (int64_t pad : {0, 8}) {
        const NormData data(rows, dim, dim + pad, uint64_t(dim * 131 + rows));
        for (NormKind kind : {NormKind::bf16_in, NormKind::f32_in, NormKind::add}) {
          for (KernelMode mode : {KernelMode::invariant, KernelMode::fast}) {
            std::vector<uint16_t> out;
            std::vector<float> res;
            run_norm(data, kind, mode, 0, rows, out, res);
            int64_t bad = 0;
            for (int64_t r = 0; r < rows; ++r) {
              std::vector<double> x(static_cast<size_t>(dim));
              for (int64_t i = 0; i < dim; ++i) {
                const size_t j = size_t(r * data.ld + i);
                if (kind == NormKind::bf16_in) {
                  x[size_t(i)] = bf16_value(data.x16[j]);
                } else if (kind == NormKind::f32_in) {
                  x[size_t(i)] = data.x32[j];
                } else {
                  const float sum = data.x32[j] + bf16_value(data.delta[j]);  // f32 add, exact ref
                  if (std::memcmp(&sum, &res[j], 4) != 0) ++bad;
                  x[size_t(i)] = sum;
                }
              }
              double ss = 0;
              for (double v : x) ss += v * v;
              const double inv = 1.0 / std::sqrt(ss / double(dim) + 1e-6);
              for (int64_t i = 0; i < dim; ++i) {
                const double ref = double(bf16_value(data.w[size_t(i)])) * x[size_t(i)] * inv;
                if (!close_bf16(out[size_t(r * dim + i)], ref, std::fabs(ref))) ++bad;
              }
            }
            EXPECT_EQ(bad, 0) << norm_name(kind) << " " << kernel_mode_name(mode) << " dim " << dim
                              << " rows " << rows << " ld " << data.ld;
            ++checked;
          }
        }
      }
    }
  }
  std::printf("rmsnorm: %d (dim, rows, stride, variant, mode) cases against f64\n", checked);
}

// Differing rows of calls over n = 1..64 and a spread of larger n, each at a shifted slot,
// against one call over all rows.
int64_t norm_row_count_diffs(const NormData& data, NormKind kind, KernelMode mode, int64_t* calls) {
  std::vector<uint16_t> full;
  std::vector<float> full_res;
  run_norm(data, kind, mode, 0, data.rows, full, full_res);
  std::vector<int64_t> ns;
  for (int64_t n = 1; n <= 64; ++n) ns.push_back(n);
  for (int64_t n : {100, 127, 128, 129, 255, 256, 257, 509, 1000, 2047, 2999}) ns.push_back(n);
  int64_t diffs = 0;
  std::mt19937 rng(5);
  for (int64_t n : ns) {
    const int64_t first = int64_t(rng() % uint32_t(data.rows - n + 1));
    std::vector<uint16_t> out;
    std::vector<float> res;
    run_norm(data, kind, mode, first, n, out, res);
    for (int64_t r = 0; r < n; ++r) {
      diffs += std::memcmp(out.data() + r * data.dim, full.data() + (first + r) * data.dim,
                           size_t(data.dim) * 2) != 0;
    }
    ++*calls;
  }
  return diffs;
}

TEST(OpsCuda, RmsnormRowsAreBitIdenticalForEveryRowCount) {
  REQUIRE_GPU();
  for (int64_t dim : {128, 576, 4096, 5125, 12289}) {
    const NormData data(3000, dim, dim, uint64_t(dim));
    for (NormKind kind : {NormKind::bf16_in, NormKind::add}) {
      int64_t calls = 0;
      const int64_t diffs = norm_row_count_diffs(data, kind, KernelMode::invariant, &calls);
      std::printf("invariant %-13s dim %5lld: %lld row counts, differing rows %lld\n",
                  norm_name(kind), (long long)dim, (long long)calls, (long long)diffs);
      EXPECT_EQ(diffs, 0) << norm_name(kind) << " dim " << dim;
    }
  }
}

TEST(OpsCuda, NegativeControlFastRmsnormRowsChangeWithRowCount) {
  REQUIRE_GPU();
  for (int64_t dim : {128, 576, 4096, 5125}) {
    const NormData data(3000, dim, dim, uint64_t(dim));
    int64_t calls = 0;
    const int64_t diffs = norm_row_count_diffs(data, NormKind::bf16_in, KernelMode::fast, &calls);
    std::printf("fast      %-13s dim %5lld: %lld row counts, differing rows %lld\n",
                norm_name(NormKind::bf16_in), (long long)dim, (long long)calls, (long long)diffs);
    // Threads per row = min(dim, 1024 or 256): for dim <= 256 the tree does not change.
    if (dim > 256) EXPECT_GT(diffs, 0) << "fast rmsnorm dim " << dim << " never changed a row";
  }
}

// ---- per-head RMSNorm, bias, row gather -------------------------------------------------------

// rmsnorm_heads in place over [T, W] rows whose first `heads` x D columns are the heads (the
// q part of a fused q/k/v row): each head against f64, the rest of the row untouched, and each
// head's bits equal to plain rmsnorm over the same D values.
TEST(OpsCuda, RmsnormHeadsMatchesF64AndPlainRmsnormBits) {
  REQUIRE_GPU();
  for (int64_t d : {64, 128}) {
    for (int64_t tokens : {1, 7, 17, 769}) {
      const int heads = 5;
      const int64_t ld = heads * d + 3 * d;  // heads, then other columns
      const auto x = random_bf16(size_t(tokens * ld), uint64_t(d * 31 + tokens), 2.0f);
      const auto w = random_bf16(size_t(d), 3, 1.0f);
      DeviceBuffer dx = upload(x), dw = upload(w);
      for (KernelMode mode : {KernelMode::invariant, KernelMode::fast}) {
        CUDA_OK(cudaMemcpy(dx.as(), x.data(), x.size() * 2, cudaMemcpyHostToDevice));
        STATUS_OK(rmsnorm_heads(dx.as<bf16>(), ld, dw.as<bf16>(), tokens, heads, d, 1e-6f, mode,
                                nullptr));
        CUDA_OK(cudaDeviceSynchronize());
        const auto out = download<uint16_t>(dx.as(), x.size());
        // Plain rmsnorm over the same heads as rows of length D (contiguous copy).
        std::vector<uint16_t> rows(size_t(tokens * heads * d));
        for (int64_t t = 0; t < tokens; ++t)
          std::copy_n(x.data() + t * ld, heads * d, rows.data() + t * heads * d);
        DeviceBuffer dr = upload(rows), dro = device_buffer(rows.size() * 2);
        STATUS_OK(rmsnorm(dr.as<bf16>(), d, dw.as<bf16>(), tokens * heads, d, 1e-6f,
                          dro.as<bf16>(), d, mode, nullptr));
        CUDA_OK(cudaDeviceSynchronize());
        const auto plain = download<uint16_t>(dro.as(), rows.size());
        int64_t bad = 0, bits = 0, touched = 0;
        for (int64_t t = 0; t < tokens; ++t) {
          for (int h = 0; h < heads; ++h) {
            const uint16_t* xi = x.data() + t * ld + h * d;
            double ss = 0;
            for (int64_t i = 0; i < d; ++i) ss += double(bf16_value(xi[i])) * bf16_value(xi[i]);
            const double inv = 1.0 / std::sqrt(ss / double(d) + 1e-6);
            for (int64_t i = 0; i < d; ++i) {
              const double ref = double(bf16_value(w[size_t(i)])) * bf16_value(xi[i]) * inv;
              bad += !close_bf16(out[size_t(t * ld + h * d + i)], ref, std::fabs(ref) + 1e-3);
              bits += out[size_t(t * ld + h * d + i)] != plain[size_t((t * heads + h) * d + i)];
            }
          }
          for (int64_t i = heads * d; i < ld; ++i) touched += out[size_t(t * ld + i)] != x[size_t(t * ld + i)];
        }
        EXPECT_EQ(bad, 0) << "d " << d << " tokens " << tokens << " " << kernel_mode_name(mode);
        EXPECT_EQ(bits, 0) << "per-head and plain rmsnorm differ, d " << d << " tokens " << tokens;
        EXPECT_EQ(touched, 0) << "columns past the heads were written";
      }
    }
  }
}

TEST(OpsCuda, AddBiasAndGatherRowsAreExact) {
  REQUIRE_GPU();
  for (int64_t n : {8, 960, 5125}) {
    for (int64_t tokens : {1, 7, 17, 769}) {
      const int64_t ld = n + 8;
      const auto y = random_bf16(size_t(tokens * ld), uint64_t(n + tokens), 4.0f);
      std::vector<float> bias(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) bias[size_t(i)] = uniform(77, uint64_t(i));
      DeviceBuffer dy = upload(y), db = upload(bias);
      STATUS_OK(add_bias(dy.as<bf16>(), ld, db.as<float>(), tokens, n, nullptr));
      CUDA_OK(cudaDeviceSynchronize());
      const auto out = download<uint16_t>(dy.as(), y.size());
      int64_t bad = 0;
      for (int64_t t = 0; t < tokens; ++t)
        for (int64_t i = 0; i < ld; ++i) {
          const size_t k = size_t(t * ld + i);
          const uint16_t want = i < n ? bf16_bits(bf16_value(y[k]) + bias[size_t(i)]) : y[k];
          bad += out[k] != want;
        }
      EXPECT_EQ(bad, 0) << "add_bias n " << n << " tokens " << tokens;

      // Gather rows in a scrambled order, with repeats.
      std::vector<int32_t> pick;
      for (int64_t r = 0; r < tokens; ++r) pick.push_back(int32_t((r * 5 + 3) % tokens));
      pick.push_back(0);
      DeviceBuffer dp = upload(pick), dg = device_buffer(pick.size() * size_t(n) * 2);
      poison_bf16(dg.as(), int64_t(pick.size()) * n);
      STATUS_OK(gather_rows(dy.as<bf16>(), ld, dp.as<int32_t>(), int64_t(pick.size()), n,
                            dg.as<bf16>(), n, nullptr));
      CUDA_OK(cudaDeviceSynchronize());
      const auto g = download<uint16_t>(dg.as(), pick.size() * size_t(n));
      int64_t wrong = 0;
      for (size_t r = 0; r < pick.size(); ++r)
        wrong += std::memcmp(g.data() + r * size_t(n), out.data() + size_t(pick[r]) * size_t(ld),
                             size_t(n) * 2) != 0;
      EXPECT_EQ(wrong, 0) << "gather_rows n " << n << " tokens " << tokens;
    }
  }
}

// ---- RoPE -----------------------------------------------------------------------------------

TEST(OpsCuda, RopeMatchesF64Reference) {
  REQUIRE_GPU();
  std::mt19937 rng(9);
  int checked = 0;
  for (RopeStyle style : {RopeStyle::half, RopeStyle::interleaved}) {
    for (int d : {64, 128}) {
      for (int rot : {d, d / 2}) {
        for (int64_t tokens : {1, 7, 17, 300}) {
          for (int heads : {3, 9, 32}) {
            const int64_t ld = int64_t(heads + 2) * d;  // q inside a fused qkv row
            std::vector<uint16_t> x =
                random_bf16(size_t(tokens * ld), uint64_t(tokens * heads + d), 1.0f);
            std::vector<int32_t> pos(static_cast<size_t>(tokens));
            for (auto& p : pos) p = int32_t(rng() % 40000);
            std::vector<float> inv(size_t(rot / 2));
            for (int i = 0; i < rot / 2; ++i) {
              inv[size_t(i)] = float(1.0 / std::pow(1e6, 2.0 * i / rot));
            }
            DeviceBuffer dx = upload(x), dpos = upload(pos), dinv = upload(inv);
            const RopeParams params{style, rot, dinv.as<float>(), 1.0f};
            STATUS_OK(
                rope(dx.as<bf16>(), ld, dpos.as<int32_t>(), tokens, heads, d, params, nullptr));
            CUDA_OK(cudaDeviceSynchronize());
            const std::vector<uint16_t> out = download<uint16_t>(dx.as(), x.size());
            int64_t bad = 0;
            const int half = rot / 2;
            for (int64_t t = 0; t < tokens; ++t) {
              std::vector<double> cs(static_cast<size_t>(half)), sn(static_cast<size_t>(half));
              for (int i = 0; i < half; ++i) {
                const double angle = double(float(pos[size_t(t)]) * inv[size_t(i)]);
                cs[size_t(i)] = double(float(std::cos(angle)));
                sn[size_t(i)] = double(float(std::sin(angle)));
              }
              for (int64_t j = 0; j < ld; ++j) {
                const size_t idx = size_t(t * ld + j);
                const int h = int(j / d), e = int(j % d);
                if (h >= heads || e >= rot) {  // pass-through dims and the rest of the row
                  bad += out[idx] != x[idx];
                  continue;
                }
                int i, other;
                bool first;
                if (style == RopeStyle::half) {
                  i = e % half, first = e < half, other = first ? e + half : e - half;
                } else {
                  i = e / 2, first = e % 2 == 0, other = first ? e + 1 : e - 1;
                }
                const double a = bf16_value(x[idx]);
                const double b = bf16_value(x[size_t(t * ld + h * d + other)]);
                const double ref = first ? a * cs[size_t(i)] - b * sn[size_t(i)]
                                         : a * cs[size_t(i)] + b * sn[size_t(i)];
                if (!close_bf16(out[idx], ref, std::fabs(a) + std::fabs(b))) ++bad;
              }
            }
            EXPECT_EQ(bad, 0) << "style " << int(style) << " D " << d << " rot " << rot
                              << " tokens " << tokens << " heads " << heads;
            ++checked;
          }
        }
      }
    }
  }
  std::printf("rope: %d cases against f64\n", checked);
}

// ---- embedding, silu_mul, argmax -------------------------------------------------------------

TEST(OpsCuda, EmbeddingCopiesRowsExactly) {
  REQUIRE_GPU();
  const int64_t vocab = 5125;
  for (int64_t hidden : {7, 64, 576, 769}) {
    for (int64_t tokens : {1, 7, 17, 769}) {
      const std::vector<uint16_t> table =
          random_bf16(size_t(vocab * hidden), uint64_t(hidden), 1.0f);
      std::vector<int32_t> ids(static_cast<size_t>(tokens));
      for (int64_t t = 0; t < tokens; ++t) ids[size_t(t)] = int32_t((t * 7919 + 13) % vocab);
      ids[0] = int32_t(vocab - 1);
      if (tokens > 1) ids[1] = int32_t(vocab);  // out of range: zeros
      DeviceBuffer dt = upload(table), di = upload(ids);
      DeviceBuffer o32 = device_buffer(size_t(tokens * hidden) * 4),
                   o16 = device_buffer(size_t(tokens * hidden) * 2);
      STATUS_OK(embedding(dt.as<bf16>(), vocab, hidden, di.as<int32_t>(), tokens, o32.as<float>(),
                          hidden, nullptr));
      STATUS_OK(embedding(dt.as<bf16>(), vocab, hidden, di.as<int32_t>(), tokens, o16.as<bf16>(),
                          hidden, nullptr));
      CUDA_OK(cudaDeviceSynchronize());
      const auto f = download<float>(o32.as(), size_t(tokens * hidden));
      const auto h = download<uint16_t>(o16.as(), size_t(tokens * hidden));
      int64_t bad = 0;
      for (int64_t t = 0; t < tokens; ++t) {
        const int32_t id = ids[size_t(t)];
        for (int64_t i = 0; i < hidden; ++i) {
          const uint16_t want = id < vocab ? table[size_t(id * hidden + i)] : uint16_t(0);
          bad += h[size_t(t * hidden + i)] != want;
          bad += f[size_t(t * hidden + i)] != bf16_value(want);
        }
      }
      EXPECT_EQ(bad, 0) << "hidden " << hidden << " tokens " << tokens;
    }
  }
}

TEST(OpsCuda, SiluMulMatchesF64Reference) {
  REQUIRE_GPU();
  for (int64_t inter : {1, 7, 769, 5125}) {
    for (int64_t tokens : {1, 7, 17}) {
      // gate and up as the two halves of one fused [T, 2I] gate_up output.
      const int64_t ld = 2 * inter;
      const std::vector<uint16_t> gu =
          random_bf16(size_t(tokens * ld), uint64_t(inter + tokens), 8.0f);
      DeviceBuffer d = upload(gu), o = device_buffer(size_t(tokens * inter) * 2);
      poison_bf16(o.as(), tokens * inter);
      STATUS_OK(silu_mul(d.as<bf16>(), ld, d.as<bf16>() + inter, ld, tokens, inter, o.as<bf16>(),
                         inter, nullptr));
      CUDA_OK(cudaDeviceSynchronize());
      const auto out = download<uint16_t>(o.as(), size_t(tokens * inter));
      int64_t bad = 0;
      for (int64_t t = 0; t < tokens; ++t) {
        for (int64_t i = 0; i < inter; ++i) {
          const double g = bf16_value(gu[size_t(t * ld + i)]);
          const double u = bf16_value(gu[size_t(t * ld + inter + i)]);
          const double ref = g / (1.0 + std::exp(-g)) * u;
          if (!close_bf16(out[size_t(t * inter + i)], ref, std::fabs(ref))) ++bad;
        }
      }
      EXPECT_EQ(bad, 0) << "inter " << inter << " tokens " << tokens;
    }
  }
}

// The paired layout of the gate/up weight (gemm.h): the same values give the same bits.
TEST(OpsCuda, SiluMulPairedGivesTheBitsOfSiluMul) {
  REQUIRE_GPU();
  for (int64_t inter : {8, 776, 1536}) {
    const int64_t tokens = 5, ld = 2 * inter;
    const std::vector<uint16_t> halves = random_bf16(size_t(tokens * ld), uint64_t(inter), 8.0f);
    std::vector<uint16_t> paired(halves.size());
    for (int64_t t = 0; t < tokens; ++t) {
      for (int64_t i = 0; i < inter; ++i) {
        const int64_t g = paired_gate_row(i);
        paired[size_t(t * ld + g)] = halves[size_t(t * ld + i)];
        paired[size_t(t * ld + g + kGateUpBlock)] = halves[size_t(t * ld + inter + i)];
      }
    }
    DeviceBuffer dh = upload(halves), dp = upload(paired);
    DeviceBuffer oh = device_buffer(size_t(tokens * inter) * 2),
                 op = device_buffer(size_t(tokens * inter) * 2);
    poison_bf16(op.as(), tokens * inter);
    STATUS_OK(silu_mul(dh.as<bf16>(), ld, dh.as<bf16>() + inter, ld, tokens, inter,
                       oh.as<bf16>(), inter, nullptr));
    STATUS_OK(silu_mul_paired(dp.as<bf16>(), ld, tokens, inter, op.as<bf16>(), inter, nullptr));
    CUDA_OK(cudaDeviceSynchronize());
    EXPECT_EQ(download<uint16_t>(oh.as(), size_t(tokens * inter)),
              download<uint16_t>(op.as(), size_t(tokens * inter)))
        << "inter " << inter;
  }
  DeviceBuffer d = device_buffer(64), o = device_buffer(64);
  EXPECT_FALSE(silu_mul_paired(d.as<bf16>(), 24, 1, 12, o.as<bf16>(), 12, nullptr).ok())
      << "I = 12 is not a whole number of blocks";
}

template <typename T>
void argmax_case(int64_t rows, int64_t cols, std::mt19937& rng) {
  std::vector<float> x(size_t(rows * cols));
  for (auto& v : x) v = bf16_value(bf16_bits(uniform(rng(), 0)));  // bf16 grid: many ties
  for (int64_t r = 0; r < rows; ++r) {
    float* row = x.data() + r * cols;
    if (r % 3 == 1 && cols > 2) {  // an explicit tie at the top, lower index first
      const int64_t a = int64_t(rng() % uint32_t(cols / 2)), b = cols / 2 + a;
      row[a] = row[b] = 4.0f;
    }
    if (r % 3 == 2) row[0] = NAN;                 // NaN is skipped
    if (r == 5) std::fill(row, row + cols, NAN);  // all NaN: 0
  }
  std::vector<T> xs(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    if constexpr (sizeof(T) == 2) {
      const uint16_t b = std::isnan(x[i]) ? uint16_t(0x7fc0) : bf16_bits(x[i]);
      std::memcpy(&xs[i], &b, 2);
    } else {
      xs[i] = x[i];
    }
  }
  DeviceBuffer d = upload(xs), o = device_buffer(size_t(rows) * 4);
  STATUS_OK(argmax(d.as<T>(), cols, rows, cols, o.as<int32_t>(), nullptr));
  CUDA_OK(cudaDeviceSynchronize());
  const auto got = download<int32_t>(o.as(), size_t(rows));
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = x.data() + r * cols;
    int32_t want = 0;
    float best = -INFINITY;
    bool any = false;
    for (int64_t j = 0; j < cols; ++j) {
      if (std::isnan(row[j])) continue;
      if (!any || row[j] > best) {
        best = row[j];
        want = int32_t(j);
        any = true;
      }
    }
    EXPECT_EQ(got[size_t(r)], want)
        << (sizeof(T) == 2 ? "bf16" : "f32") << " row " << r << " of " << rows << " x " << cols;
  }
}

TEST(OpsCuda, ArgmaxPicksTheLowestIdOfTheMaximum) {
  REQUIRE_GPU();
  std::mt19937 rng(17);
  for (int64_t cols : {1, 7, 769, 5125, 151936}) {
    for (int64_t rows : {1, 7, 17}) {
      argmax_case<bf16>(rows, cols, rng);
      argmax_case<float>(rows, cols, rng);
    }
  }
}

// logit_summary against an f64 reference (argmax exact, maximum exact, log_z within f32
// rounding of a sum of up to 151936 terms), and the same row at every position of batches of
// other rows giving the same bits (R4).
TEST(OpsCuda, LogitSummaryMatchesReferenceAndIgnoresTheBatch) {
  REQUIRE_GPU();
  std::mt19937 rng(23);
  for (int64_t cols : {1, 7, 769, 49152, 151936}) {
    const int64_t rows = 9;
    std::vector<uint16_t> xs(size_t(rows * cols));
    for (auto& b : xs) b = bf16_bits(8.0f * uniform(rng(), 0));
    if (cols > 2) xs[size_t(1 * cols + cols - 1)] = xs[size_t(1 * cols)] = bf16_bits(12.0f);  // tie
    if (cols > 1) xs[size_t(2 * cols)] = 0x7fc0;                                         // NaN
    DeviceBuffer d = upload(xs), am = device_buffer(size_t(rows) * 4),
                 mx = device_buffer(size_t(rows) * 4), lz = device_buffer(size_t(rows) * 4);
    STATUS_OK(logit_summary(d.as<bf16>(), cols, rows, cols, am.as<int32_t>(), mx.as<float>(),
                            lz.as<float>(), nullptr));
    CUDA_OK(cudaDeviceSynchronize());
    const auto got_am = download<int32_t>(am.as(), size_t(rows));
    const auto got_mx = download<float>(mx.as(), size_t(rows));
    const auto got_lz = download<float>(lz.as(), size_t(rows));
    for (int64_t r = 0; r < rows; ++r) {
      const uint16_t* row = xs.data() + r * cols;
      int32_t want = 0;
      double best = -INFINITY;
      for (int64_t j = 0; j < cols; ++j) {
        const double v = bf16_value(row[j]);
        if (!std::isnan(v) && v > best) {
          best = v;
          want = int32_t(j);
        }
      }
      double sum = 0;
      for (int64_t j = 0; j < cols; ++j) {
        const double v = bf16_value(row[j]);
        if (!std::isnan(v)) sum += std::exp(v - best);
      }
      const double log_z = best + std::log(sum);
      EXPECT_EQ(got_am[size_t(r)], want) << "row " << r << " of " << cols;
      EXPECT_EQ(double(got_mx[size_t(r)]), best) << "row " << r << " of " << cols;
      EXPECT_NEAR(double(got_lz[size_t(r)]), log_z, 2e-6 * std::max(1.0, std::fabs(log_z)))
          << "row " << r << " of " << cols;
    }
    // Row 3 alone, then at the end of a batch of 5 other rows: the same bits.
    const int64_t r3 = 3;
    std::vector<uint16_t> batch(xs.begin() + 4 * cols, xs.begin() + 9 * cols);
    batch.insert(batch.end(), xs.begin() + r3 * cols, xs.begin() + (r3 + 1) * cols);
    DeviceBuffer db = upload(batch), am2 = device_buffer(6 * 4), mx2 = device_buffer(6 * 4),
                 lz2 = device_buffer(6 * 4);
    STATUS_OK(logit_summary(db.as<bf16>(), cols, 6, cols, am2.as<int32_t>(), mx2.as<float>(),
                            lz2.as<float>(), nullptr));
    CUDA_OK(cudaDeviceSynchronize());
    const auto lz_batch = download<float>(lz2.as(), 6);
    EXPECT_EQ(std::memcmp(&lz_batch[5], &got_lz[size_t(r3)], 4), 0) << "cols " << cols;
  }
}

// ---- sample_rows ------------------------------------------------------------------------------

// The engine's sampler semantics (engine/sampler.cpp) on a row of bf16 logits, exactly: the kept
// ids in id order and their f32 weights.
struct KeptSet {
  std::vector<int32_t> ids;
  std::vector<double> w;
};
KeptSet reference_kept(const std::vector<uint16_t>& row, const SampleRowParams& p) {
  const int v = int(row.size());
  std::vector<float> x(static_cast<size_t>(v));
  for (int j = 0; j < v; ++j) x[size_t(j)] = bf16_value(row[size_t(j)]);
  int best = 0;
  for (int j = 1; j < v; ++j)
    if (x[size_t(j)] > x[size_t(best)]) best = j;
  std::vector<float> w(static_cast<size_t>(v));
  std::vector<int32_t> kept;
  for (int j = 0; j < v; ++j) {
    w[size_t(j)] = std::exp((x[size_t(j)] - x[size_t(best)]) * p.inv_temperature);
    if (w[size_t(j)] >= p.min_p) kept.push_back(j);
  }
  auto before = [&](int32_t a, int32_t b) { return x[size_t(a)] != x[size_t(b)] ? x[size_t(a)] > x[size_t(b)] : a < b; };
  std::sort(kept.begin(), kept.end(), before);
  if (p.top_k > 0 && size_t(p.top_k) < kept.size()) kept.resize(size_t(p.top_k));
  if (p.top_p < 1.0f) {
    double mass = 0;
    for (int32_t j : kept) mass += w[size_t(j)];
    double cum = 0;
    size_t n = 0;
    while (n < kept.size()) {
      cum += w[size_t(kept[n++])];
      if (cum >= double(p.top_p) * mass) break;
    }
    kept.resize(n);
  }
  std::sort(kept.begin(), kept.end());
  KeptSet k;
  for (int32_t j : kept) {
    k.ids.push_back(j);
    k.w.push_back(w[size_t(j)]);
  }
  return k;
}

// Each row drawn at many uniforms u: the token must be the one whose share of the kept mass (in
// id order) holds u, except within rounding of a boundary; greedy gives the lowest id of the
// maximum; and a row gives the same token alone and among other rows (R4).
TEST(OpsCuda, SampleRowsFollowsTheSamplerAndIgnoresTheBatch) {
  REQUIRE_GPU();
  const SampleRowParams configs[] = {
      {1.0f, 0, 1.0f, 0.0f, 0.0f},     {1.0f / 0.7f, 5, 1.0f, 0.0f, 0.0f},
      {1.0f / 1.3f, 0, 0.9f, 0.0f, 0.0f}, {1.0f, 0, 1.0f, 0.05f, 0.0f},
      {1.0f / 0.8f, 50, 0.95f, 0.02f, 0.0f}, {0.0f, 0, 1.0f, 0.0f, 0.0f}};
  constexpr int kDraws = 257;
  for (int64_t cols : {7, 769, 49152, 151936}) {
    std::mt19937 rng(static_cast<uint32_t>(cols));
    std::vector<uint16_t> row(static_cast<size_t>(cols));
    // Coarse values: many ties. A few high ones make the top sets interesting.
    for (auto& b : row) b = bf16_bits(float(int(rng() % 64)) * 0.125f);
    for (int i = 0; i < 6; ++i) row[size_t(rng() % uint32_t(cols))] = bf16_bits(9.0f + float(i % 3));
    for (const SampleRowParams& base : configs) {
      // kDraws rows, all the same logits, each with its own u; then the same with other rows
      // between them.
      std::vector<uint16_t> x;
      std::vector<SampleRowParams> params;
      for (int d = 0; d < kDraws; ++d) {
        x.insert(x.end(), row.begin(), row.end());
        SampleRowParams q = base;
        q.u = (float(d) + 0.5f) / float(kDraws);
        params.push_back(q);
      }
      DeviceBuffer dx = upload(x), dp = upload(params), tok = device_buffer(size_t(kDraws) * 4),
                   lg = device_buffer(size_t(kDraws) * 4);
      STATUS_OK(sample_rows(dx.as<bf16>(), cols, kDraws, cols, dp.as<SampleRowParams>(), nullptr,
                            tok.as<int32_t>(), lg.as<float>(), nullptr));
      CUDA_OK(cudaDeviceSynchronize());
      const auto got = download<int32_t>(tok.as(), kDraws);
      const auto got_logit = download<float>(lg.as(), kDraws);

      const KeptSet ref = base.inv_temperature > 0.0f ? reference_kept(row, base) : KeptSet{};
      double total = 0;
      for (double w : ref.w) total += w;
      int bad = 0;
      for (int d = 0; d < kDraws; ++d) {
        const int32_t t = got[size_t(d)];
        ASSERT_TRUE(t >= 0 && t < cols);
        EXPECT_EQ(got_logit[size_t(d)], bf16_value(row[size_t(t)]));
        if (base.inv_temperature <= 0.0f) {
          int32_t best = 0;
          for (int64_t j = 1; j < cols; ++j)
            if (bf16_value(row[size_t(j)]) > bf16_value(row[size_t(best)])) best = int32_t(j);
          EXPECT_EQ(t, best);
          continue;
        }
        const double u = double(params[size_t(d)].u) * total;
        double cum = 0;
        int32_t want = ref.ids.back();
        bool near_edge = false;
        for (size_t i = 0; i < ref.ids.size(); ++i) {
          cum += ref.w[i];
          near_edge |= std::fabs(u - cum) < 1e-9 * total;
          if (u < cum) {
            want = ref.ids[i];
            break;
          }
        }
        if (t != want && !near_edge) ++bad;
      }
      EXPECT_EQ(bad, 0) << "cols " << cols << " T^-1 " << base.inv_temperature << " top_k "
                        << base.top_k << " top_p " << base.top_p << " min_p " << base.min_p
                        << " (kept " << ref.ids.size() << ")";

      // The first 16 draws again, each now between two rows of other logits.
      std::vector<uint16_t> mixed;
      std::vector<SampleRowParams> mixed_params;
      for (int d = 0; d < 16; ++d) {
        for (int o = 0; o < 2; ++o) {
          for (int64_t j = 0; j < cols; ++j) mixed.push_back(bf16_bits(float(int(rng() % 97)) * 0.1f));
          SampleRowParams q = base;
          q.u = float(rng() % 1000) / 1000.0f;
          mixed_params.push_back(q);
        }
        mixed.insert(mixed.end(), row.begin(), row.end());
        mixed_params.push_back(params[size_t(d)]);
      }
      DeviceBuffer mx = upload(mixed), mp = upload(mixed_params), mt = device_buffer(48 * 4),
                   ml = device_buffer(48 * 4);
      STATUS_OK(sample_rows(mx.as<bf16>(), cols, 48, cols, mp.as<SampleRowParams>(), nullptr,
                            mt.as<int32_t>(), ml.as<float>(), nullptr));
      CUDA_OK(cudaDeviceSynchronize());
      const auto got_mixed = download<int32_t>(mt.as(), 48);
      for (int d = 0; d < 16; ++d) EXPECT_EQ(got_mixed[size_t(d * 3 + 2)], got[size_t(d)]) << "draw " << d;
    }
  }
}

}  // namespace
}  // namespace invar::kernels::cuda
