#include "op_reference.h"

#include <algorithm>
#include <cmath>

namespace invar::ops_test {

void ref_gemm(const float* x, const float* w, const float* bias, int64_t m, int64_t n, int64_t k,
              std::vector<double>& y, std::vector<double>& mag) {
  y.assign(size_t(m * n), 0.0);
  mag.assign(size_t(m * n), 0.0);
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t c = 0; c < n; ++c) {
      double s = 0, a = 0;
      for (int64_t i = 0; i < k; ++i) {
        const double p = double(x[r * k + i]) * double(w[c * k + i]);
        s += p;
        a += std::fabs(p);
      }
      if (bias) s += bias[c], a += std::fabs(bias[c]);
      y[size_t(r * n + c)] = s;
      mag[size_t(r * n + c)] = a;
    }
  }
}

void ref_rmsnorm(const float* x, const float* weight, int64_t rows, int64_t dim, double eps,
                 std::vector<double>& out) {
  out.assign(size_t(rows * dim), 0.0);
  for (int64_t r = 0; r < rows; ++r) {
    double ss = 0;
    for (int64_t i = 0; i < dim; ++i) ss += double(x[r * dim + i]) * x[r * dim + i];
    const double inv = 1.0 / std::sqrt(ss / double(dim) + eps);
    for (int64_t i = 0; i < dim; ++i) out[size_t(r * dim + i)] = x[r * dim + i] * inv * weight[i];
  }
}

void ref_rope(const float* x, const int32_t* positions, int64_t tokens, int heads, int head_dim,
              const kernels::RopeParams& p, std::vector<double>& out) {
  out.assign(x, x + tokens * heads * head_dim);
  const int half = p.rot_dim / 2;
  for (int64_t t = 0; t < tokens; ++t) {
    for (int h = 0; h < heads; ++h) {
      const float* in = x + (t * heads + h) * head_dim;
      double* o = out.data() + (t * heads + h) * head_dim;
      for (int i = 0; i < half; ++i) {
        const double angle = double(positions[t]) * double(p.inv_freq[i]);
        const double c = std::cos(angle) * p.attention_factor;
        const double s = std::sin(angle) * p.attention_factor;
        const int a = p.style == kernels::RopeStyle::half ? i : 2 * i;
        const int b = p.style == kernels::RopeStyle::half ? i + half : 2 * i + 1;
        o[a] = in[a] * c - double(in[b]) * s;
        o[b] = in[b] * c + double(in[a]) * s;
      }
    }
  }
}

void ref_attention(const float* q, const kernels::KvLayerRef& cache,
                   const kernels::AttentionPlan& plan, int q_heads, double scale,
                   std::vector<double>& out) {
  const int d = cache.head_dim, hkv = cache.kv_heads, g = q_heads / hkv;
  const int64_t tokens = plan.q_indptr[plan.num_seqs];
  out.assign(size_t(tokens * q_heads * d), 0.0);
  for (int s = 0; s < plan.num_seqs; ++s) {
    const int32_t b = plan.q_indptr[s], e = plan.q_indptr[s + 1];
    const int32_t* table = plan.block_tables + int64_t(s) * plan.max_blocks_per_seq;
    // Element i of the cache row of (position, kv head), f32 or f16 (decoded exactly).
    auto at = [&](const void* base, int pos, int h, int i) -> double {
      const int64_t slot =
          int64_t(table[pos / cache.block_size]) * cache.block_size + pos % cache.block_size;
      const int64_t e = (slot * hkv + h) * d + i;
      return cache.dtype == DType::f16 ? f16_to_f32(static_cast<const uint16_t*>(base)[e])
                                       : static_cast<const float*>(base)[e];
    };
    for (int32_t t = b; t < e; ++t) {
      const int pos = plan.kv_lens[s] - (e - b) + (t - b);
      for (int hq = 0; hq < q_heads; ++hq) {
        const int h = hq / g;
        const float* qv = q + (int64_t(t) * q_heads + hq) * d;
        // A sliding window keeps positions lo..pos; the rest get p = 0.
        const int lo = plan.sliding_window > 0 ? std::max(0, pos - plan.sliding_window + 1) : 0;
        std::vector<double> sc(static_cast<size_t>(pos + 1));
        double mx = -INFINITY;
        for (int j = lo; j <= pos; ++j) {
          double dot = 0;
          for (int i = 0; i < d; ++i) dot += double(qv[i]) * at(cache.k, j, h, i);
          sc[size_t(j)] = dot * scale;
          if (plan.logit_softcap > 0)  // Gemma 2's soft-cap of the scaled score
            sc[size_t(j)] = std::tanh(sc[size_t(j)] / plan.logit_softcap) * plan.logit_softcap;
          mx = std::max(mx, sc[size_t(j)]);
        }
        double sum = 0;
        for (int j = lo; j <= pos; ++j) sum += (sc[size_t(j)] = std::exp(sc[size_t(j)] - mx));
        double* o = out.data() + (int64_t(t) * q_heads + hq) * d;
        for (int j = lo; j <= pos; ++j) {
          for (int i = 0; i < d; ++i) o[i] += sc[size_t(j)] / sum * at(cache.v, j, h, i);
        }
      }
    }
  }
}

void ref_silu_mul(const float* gate, const float* up, int64_t n, std::vector<double>& out) {
  out.resize(size_t(n));
  for (int64_t i = 0; i < n; ++i) {
    const double g = gate[i];
    out[size_t(i)] = g / (1.0 + std::exp(-g)) * up[i];
  }
}

void ref_gelu_tanh_mul(const float* gate, const float* up, int64_t n, std::vector<double>& out) {
  out.resize(size_t(n));
  const double beta = std::sqrt(2.0 / 3.14159265358979323846);
  for (int64_t i = 0; i < n; ++i) {
    const double g = gate[i];
    out[size_t(i)] = 0.5 * g * (1.0 + std::tanh(beta * (g + 0.044715 * g * g * g))) * up[i];
  }
}

void ref_softcap(const float* x, int64_t n, double cap, std::vector<double>& out) {
  out.resize(size_t(n));
  for (int64_t i = 0; i < n; ++i) out[size_t(i)] = cap * std::tanh(double(x[i]) / cap);
}

}  // namespace invar::ops_test
