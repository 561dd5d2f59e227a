// attention: causal grouped-query attention over a paged KV cache for a varlen batch.
//
// Each (query token, kv head) is one work item: the G = Hq / Hkv query heads that share the kv
// head walk KV positions 0..pos in tiles of kKvTile positions aligned to absolute position 0,
// with an online softmax (running max m, running sum l, rescale by exp(m_old - m_new) once per
// tile). The routine sees only (q, pos, the cache), never the batch, so a token's output is
// bitwise the same in a 1-token decode step, a long prefill or any chunk of one (R3). Positions
// past pos are never read: they contribute nothing, not even a 0 * garbage.
//   per score:   fused multiply-adds over D in the logical 8-lane recipe + the fixed tree,
//                8 positions reduced together (reduce8x8, same bits as one at a time)
//   per output:  acc = acc * alpha, then acc += p_j * v_j for j ascending; out = acc / l
//   T = tokens, S = sequences, Hq = query heads, Hkv = kv heads, G = Hq / Hkv, D = head dim
#include <algorithm>
#include <cassert>
#include <cmath>
#include <vector>

#include "kernels/cpu/ops.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/cpu/attention.cpp"
#include "kernels/cpu/simd_targets.h"
// clang-format off
#include <hwy/foreach_target.h>
#include <hwy/highway.h>
// clang-format on
#include <hwy/contrib/math/math-inl.h>

#include "kernels/cpu/simd-inl.h"

HWY_BEFORE_NAMESPACE();
namespace invar::kernels::cpu {
namespace HWY_NAMESPACE {

// Positions per softmax tile. Fixed, aligned to absolute position 0, independent of the cache
// block size and of the batch (R3).
constexpr int kKvTile = 64;

struct AttnScratch {
  std::vector<const float*> kp, vp;  // [kKvTile] rows of this tile
  std::vector<float> scores;         // [G, kKvTile]
  std::vector<float> acc;            // [G, Dp]
  std::vector<float> m, l, alpha;    // [G]
};

// Dot products of q with `cnt` <= 8 key rows, reduced together.
template <bool kFull>
HWY_INLINE void scores8(const float* HWY_RESTRICT q, const float* const* kp, size_t cnt,
                        size_t dim, float* HWY_RESTRICT out) {
  Acc8 a[8];
  for (size_t j = 0; j < 8; ++j) a[j] = zero8();
  const size_t n = kFull ? 8 : cnt;
  size_t c = 0;
  for (; c + kChunk <= dim; c += kChunk) {
    const Acc8 qv = load8(q + c);
    for (size_t j = 0; j < n; ++j) fma8(qv, load8(kp[j] + c), a[j]);
  }
  if (c < dim) {
    const Acc8 qv = load8_tail(q + c, dim - c);
    for (size_t j = 0; j < n; ++j) fma8(qv, load8_tail(kp[j] + c, dim - c), a[j]);
  }
  reduce8x8(a, out);
}

// acc[g] = acc[g] * alpha[g] + sum_j p[g][j] * v_j over one tile, for GB heads and dims
// [c, c + 8) (dim tail zero-padded).
template <size_t GB>
HWY_INLINE void pv_chunk(float* HWY_RESTRICT acc, size_t acc_stride, const float* p,
                         size_t p_stride, const float* alpha, const float* const* vp, size_t n,
                         size_t c, size_t dim) {
  const DF d;
  Acc8 a[GB];
  for (size_t g = 0; g < GB; ++g) {
    a[g] = load8(acc + g * acc_stride + c);
    const VF al = hn::Set(d, alpha[g]);
    for (size_t s = 0; s < kSub; ++s) a[g].v[s] = hn::Mul(a[g].v[s], al);
  }
  const bool full = c + kChunk <= dim;
  for (size_t j = 0; j < n; ++j) {
    const Acc8 vv = full ? load8(vp[j] + c) : load8_tail(vp[j] + c, dim - c);
    for (size_t g = 0; g < GB; ++g) fma8(set8(p[g * p_stride + j]), vv, a[g]);
  }
  for (size_t g = 0; g < GB; ++g) store8(a[g], acc + g * acc_stride + c);
}

// One (token, kv head): q and out are [G, D]; positions 0..pos of sequence `table`.
void attend(const float* q, size_t groups, size_t dim, int pos, const int32_t* table,
            const KvLayerRef& cache, int kv_head, float scale, float* out, AttnScratch& sc) {
  const DF d;
  const size_t dp = (dim + kChunk - 1) / kChunk * kChunk;
  const size_t row_stride = size_t(cache.kv_heads) * dim;
  const int bs = cache.block_size;
  std::fill(sc.acc.begin(), sc.acc.begin() + groups * dp, 0.0f);
  std::fill(sc.m.begin(), sc.m.begin() + groups, -HUGE_VALF);
  std::fill(sc.l.begin(), sc.l.begin() + groups, 0.0f);

  for (int start = 0; start <= pos; start += kKvTile) {
    const size_t n = size_t(std::min(kKvTile, pos + 1 - start));
    for (size_t j = 0; j < n; ++j) {
      const int p = start + int(j);
      const size_t slot = size_t(table[p / bs]) * size_t(bs) + size_t(p % bs);
      const size_t off = slot * row_stride + size_t(kv_head) * dim;
      sc.kp[j] = cache.k + off;
      sc.vp[j] = cache.v + off;
    }
    for (size_t g = 0; g < groups; ++g) {
      float* s = sc.scores.data() + g * kKvTile;
      const float* qg = q + g * dim;
      size_t j0 = 0;
      for (; j0 + 8 <= n; j0 += 8) scores8<true>(qg, sc.kp.data() + j0, 8, dim, s + j0);
      if (j0 < n) scores8<false>(qg, sc.kp.data() + j0, n - j0, dim, s + j0);

      const VF vscale = hn::Set(d, scale);
      float tile_max = -HUGE_VALF;
      for (size_t j = 0; j < kKvTile; j += kLanes) {
        hn::StoreU(hn::Mul(hn::LoadU(d, s + j), vscale), d, s + j);
      }
      for (size_t j = 0; j < n; ++j) tile_max = std::max(tile_max, s[j]);
      const float m_new = std::max(sc.m[g], tile_max);
      const VF vmax = hn::Set(d, m_new);
      for (size_t j = 0; j < kKvTile; j += kLanes) {
        hn::StoreU(hn::Exp(d, hn::Sub(hn::LoadU(d, s + j), vmax)), d, s + j);
      }
      float tile_sum = 0.0f;
      for (size_t j = 0; j < n; ++j) tile_sum += s[j];
      const float alpha = std::exp(sc.m[g] - m_new);
      sc.alpha[g] = alpha;
      sc.l[g] = hn::GetLane(hn::MulAdd(hn::Set(d, sc.l[g]), hn::Set(d, alpha), hn::Set(d, tile_sum)));
      sc.m[g] = m_new;
    }
    for (size_t c = 0; c < dp; c += kChunk) {
      size_t g = 0;
      for (; g + 4 <= groups; g += 4) {
        pv_chunk<4>(sc.acc.data() + g * dp, dp, sc.scores.data() + g * kKvTile, kKvTile,
                    sc.alpha.data() + g, sc.vp.data(), n, c, dim);
      }
      float* acc = sc.acc.data() + g * dp;
      const float* p = sc.scores.data() + g * kKvTile;
      const float* al = sc.alpha.data() + g;
      switch (groups - g) {
        case 3: pv_chunk<3>(acc, dp, p, kKvTile, al, sc.vp.data(), n, c, dim); break;
        case 2: pv_chunk<2>(acc, dp, p, kKvTile, al, sc.vp.data(), n, c, dim); break;
        case 1: pv_chunk<1>(acc, dp, p, kKvTile, al, sc.vp.data(), n, c, dim); break;
        default: break;
      }
    }
  }
  for (size_t g = 0; g < groups; ++g) {
    const VF vl = hn::Set(d, sc.l[g]);
    float* acc = sc.acc.data() + g * dp;
    for (size_t c = 0; c < dp; c += kLanes) {
      hn::StoreU(hn::Div(hn::LoadU(d, acc + c), vl), d, acc + c);
    }
    std::copy(acc, acc + dim, out + g * dim);
  }
}

void attention_impl(const float* q, const KvLayerRef& cache, const AttentionPlan& plan,
                    int q_heads, float scale, float* out, ThreadPool& pool) {
  const int num_seqs = plan.num_seqs;
  const int64_t tokens = plan.q_indptr[num_seqs] - plan.q_indptr[0];
  if (tokens <= 0) return;
  const int kv_heads = cache.kv_heads;
  const size_t groups = size_t(q_heads / kv_heads);
  const size_t dim = size_t(cache.head_dim);
  const size_t dp = (dim + kChunk - 1) / kChunk * kChunk;
  assert(q_heads % kv_heads == 0);
  assert(plan.block_size == cache.block_size);

  // Host-side plan lookups: each token's sequence and absolute position.
  const int32_t t0 = plan.q_indptr[0];
  std::vector<int32_t> seq_of(static_cast<size_t>(tokens)), pos_of(static_cast<size_t>(tokens));
  double work = 0;
  for (int s = 0; s < num_seqs; ++s) {
    const int32_t b = plan.q_indptr[s], e = plan.q_indptr[s + 1];
    const int32_t first_pos = plan.kv_lens[s] - (e - b);
    assert(first_pos >= 0);
    for (int32_t t = b; t < e; ++t) {
      seq_of[size_t(t - t0)] = s;
      pos_of[size_t(t - t0)] = first_pos + (t - b);
      work += double(first_pos + (t - b) + 1);
    }
  }
  work *= double(q_heads) * double(dim);

  const int64_t items = tokens * kv_heads;
  // Threads take items round-robin: later tokens of a causal prefill cost more.
  const int64_t lanes = work < 65536.0 ? 1 : std::min<int64_t>(pool.size(), items);
  pool.parallel_for(lanes, 1, [&](int64_t b, int64_t e) HWY_ATTR {
    AttnScratch sc;
    sc.kp.resize(kKvTile);
    sc.vp.resize(kKvTile);
    sc.scores.assign(groups * kKvTile, 0.0f);
    sc.acc.resize(groups * dp);
    sc.m.resize(groups);
    sc.l.resize(groups);
    sc.alpha.resize(groups);
    for (int64_t lane = b; lane < e; ++lane) {
      for (int64_t item = lane; item < items; item += lanes) {
        const int64_t t = item / kv_heads;
        const int h = int(item % kv_heads);
        const int s = seq_of[size_t(t)];
        const size_t head0 = size_t(t0 + t) * size_t(q_heads) + size_t(h) * groups;
        attend(q + head0 * dim, groups, dim, pos_of[size_t(t)],
               plan.block_tables + int64_t(s) * plan.max_blocks_per_seq, cache, h, scale,
               out + head0 * dim, sc);
      }
    }
  });
}

}  // namespace HWY_NAMESPACE
}  // namespace invar::kernels::cpu
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace invar::kernels::cpu {

HWY_EXPORT(attention_impl);

void attention(const float* q, const KvLayerRef& cache, const AttentionPlan& plan, int q_heads,
               float scale, float* out, ThreadPool& pool) {
  if (plan.num_seqs <= 0) return;
  HWY_DYNAMIC_DISPATCH(attention_impl)(q, cache, plan, q_heads, scale, out, pool);
}

}  // namespace invar::kernels::cpu
#endif
