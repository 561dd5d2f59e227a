// attention: causal grouped-query attention over a paged KV cache for a varlen batch.
//
// For each (query token, kv head), the G = Hq / Hkv query heads that share the kv head walk KV
// positions 0..pos in tiles of kKvTile positions aligned to absolute position 0,
// with an online softmax (running max m, running sum l, rescale by exp(m_old - m_new) once per
// tile). The routine sees only (q, pos, the cache), never the batch, so a token's output is
// bitwise the same in a 1-token decode step, a long prefill or any chunk of one (R3). Positions
// past pos are never read: they contribute nothing, not even a 0 * garbage. A sliding window W
// starts the walk at the tile holding lo = pos - W + 1; that tile's positions below lo read a
// zero row instead of the cache and get score -inf, so p = 0 exactly and 0 * 0 adds nothing:
// the mask is a function of pos alone (R3), and W = 0 (or lo <= 0) is the full-causal walk.
//   per score:   fused multiply-adds over D in the logical 8-lane recipe + the fixed tree,
//                8 positions reduced together (reduce8x8, same bits as one at a time); a D
//                that is not a multiple of 8 is zero-padded; an f16 cache is widened (exactly)
//                as it is loaded, so its recipe is the f32 one on the stored values
//   per tile:    s *= scale, then s = c tanh(s / c) with a soft-cap c (Highway Tanh);
//                m_new = max(m, max_j s_j); p_j = exp(s_j - m_new) (Highway Exp);
//                l = l * alpha + tree8(8 lanes of p summed over j ascending)
//   per output:  acc = acc * alpha, then acc += p_j * v_j for j ascending; out = acc / l
//   T = tokens, S = sequences, Hq = query heads, Hkv = kv heads, G = Hq / Hkv, D = head dim
#include <algorithm>
#include <array>
#include <cassert>
#include <cmath>
#include <type_traits>
#include <utility>
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

// PV register block: GB heads x CB chunks of 8 dims held in registers across a tile.
#if HWY_TARGET == HWY_SCALAR
constexpr size_t kPvAcc = 4;
#elif HWY_MAX_BYTES >= 64
constexpr size_t kPvAcc = 24;  // AVX-512: 32 registers
#else
constexpr size_t kPvAcc = 12 / kSub;  // AVX2: 16 registers; NEON: kSub = 2
#endif
constexpr size_t kMaxGb = 4;  // heads per PV block
constexpr size_t kMaxCb = 8;  // chunks per PV block

struct AttnScratch {
  std::vector<size_t> rows;          // [kKvTile] offset of each position's [Hkv, D] row
  std::vector<const void*> kp, vp;   // [kKvTile] rows of this tile (padded copies if D % 8)
  std::vector<float> kpad, vpad;     // [kKvTile, Dp] zero-padded rows, only when D % 8 != 0
  std::vector<float> qpad;           // [heads, Dp]
  std::vector<float> scores;         // [heads, kKvTile]
  std::vector<float> acc;            // [heads, Dp]
  std::vector<float> m, l, alpha;    // [heads]
  std::vector<float> zero;           // [Dp] zeros: the row read for positions below the window
};

// QK register block: GB heads x JB positions of scores accumulated together, so each key chunk
// loaded serves GB heads and each query chunk JB positions.
#if HWY_TARGET == HWY_SCALAR
constexpr size_t kQkAcc = 4;
#elif HWY_MAX_BYTES >= 64
constexpr size_t kQkAcc = 24;
#else
constexpr size_t kQkAcc = 12 / kSub;
#endif

// s[g][j] = q_g . k_j for GB heads and JB <= 8 key rows of dp (a multiple of 8) floats. Every
// score is its own 8-lane chain over the chunks, reduced by reduce8x8 (the fixed tree).
template <size_t GB, size_t JB, typename KT>
HWY_NOINLINE void scores_block(const float* HWY_RESTRICT q, size_t q_stride, const void* const* kpv,
                               size_t dp, float* HWY_RESTRICT s) {
  const KT* const* kp = reinterpret_cast<const KT* const*>(kpv);
  Acc8 a[GB][8];
  for (size_t g = 0; g < GB; ++g)
    for (size_t j = 0; j < 8; ++j) a[g][j] = zero8();
  for (size_t c = 0; c < dp; c += kChunk) {
    Acc8 qv[GB];
    for (size_t g = 0; g < GB; ++g) qv[g] = load8(q + g * q_stride + c);
    for (size_t j = 0; j < JB; ++j) {
      const Acc8 kv = load8(kp[j] + c);
      for (size_t g = 0; g < GB; ++g) fma8(qv[g], kv, a[g][j]);
    }
  }
  for (size_t g = 0; g < GB; ++g) {
    alignas(32) float r[8];
    reduce8x8(a[g], r);
    for (size_t j = 0; j < JB; ++j) s[g * kKvTile + j] = r[j];
  }
}

using QkFn = void (*)(const float*, size_t, const void* const*, size_t, float*);

template <typename KT, size_t... I>
constexpr std::array<QkFn, sizeof...(I)> make_qk(std::index_sequence<I...>) {
  return {&scores_block<I / 8 + 1, I % 8 + 1, KT>...};
}

// For GB heads and CB chunks starting at dim c: acc = acc * alpha, then acc += p_j * v_j for
// j = 0..n-1 in order. The block shape only decides what stays in registers.
template <size_t GB, size_t CB, typename KT>
HWY_NOINLINE void pv_block(float* HWY_RESTRICT acc, size_t acc_stride, const float* HWY_RESTRICT p,
                           const float* HWY_RESTRICT alpha, const void* const* vpv, size_t n,
                           size_t c) {
  const KT* const* vp = reinterpret_cast<const KT* const*>(vpv);
  const DF d;
  Acc8 a[GB][CB];
  for (size_t g = 0; g < GB; ++g) {
    const VF al = hn::Set(d, alpha[g]);
    for (size_t b = 0; b < CB; ++b) {
      a[g][b] = load8(acc + g * acc_stride + c + b * kChunk);
      for (size_t s = 0; s < kSub; ++s) a[g][b].v[s] = hn::Mul(a[g][b].v[s], al);
    }
  }
  for (size_t j = 0; j < n; ++j) {
    Acc8 pj[GB];
    for (size_t g = 0; g < GB; ++g) pj[g] = set8(p[g * kKvTile + j]);
    const KT* v = vp[j] + c;
    for (size_t b = 0; b < CB; ++b) {
      const Acc8 vv = load8(v + b * kChunk);
      for (size_t g = 0; g < GB; ++g) fma8(pj[g], vv, a[g][b]);
    }
  }
  for (size_t g = 0; g < GB; ++g) {
    for (size_t b = 0; b < CB; ++b) store8(a[g][b], acc + g * acc_stride + c + b * kChunk);
  }
}

using PvFn = void (*)(float*, size_t, const float*, const float*, const void* const*, size_t,
                      size_t);

template <typename KT, size_t... I>
constexpr std::array<PvFn, sizeof...(I)> make_pv(std::index_sequence<I...>) {
  return {&pv_block<I / kMaxCb + 1, I % kMaxCb + 1, KT>...};
}

// qk[(gb - 1) * 8 + (jb - 1)] for key rows of KT (float or F16)
template <typename KT>
HWY_INLINE const QkFn* qk_table() {
  static constexpr auto kTable = make_qk<KT>(std::make_index_sequence<kMaxGb * 8>());
  return kTable.data();
}

// pv[(gb - 1) * kMaxCb + (cb - 1)] for value rows of KT
template <typename KT>
HWY_INLINE const PvFn* pv_table() {
  static constexpr auto kTable = make_pv<KT>(std::make_index_sequence<kMaxGb * kMaxCb>());
  return kTable.data();
}

// Row i of a cache of T widened to f32 (exact).
HWY_INLINE void widen_row(const float* src, size_t n, float* dst) {
  std::copy(src, src + n, dst);
}
HWY_INLINE void widen_row(const F16* src, size_t n, float* dst) {
  for (size_t i = 0; i < n; ++i) dst[i] = f16_to_f32(src[i].bits);
}

// Online-softmax update of one head over one tile: scales the scores, replaces them by
// p_j = exp(s_j - m_new) (exact zeros below `skip` and past n), and updates m, l and alpha.
// softcap > 0 caps each scaled score first (transformers' order: s / cap, tanh, * cap).
HWY_INLINE void softmax_tile(float* HWY_RESTRICT s, size_t skip, size_t n, float scale,
                             float softcap, float& m, float& l, float& alpha) {
  const DF d;
  const VF vscale = hn::Set(d, scale);
  const VF vcap = hn::Set(d, softcap);
  const VF neg_inf = hn::Set(d, -HUGE_VALF);
  VF vmax = neg_inf;
  for (size_t j = 0; j < size_t(kKvTile); j += kLanes) {
    VF x = hn::Mul(hn::LoadU(d, s + j), vscale);
    if (softcap > 0.0f) x = hn::Mul(hn::Tanh(d, hn::Div(x, vcap)), vcap);
    if (j + kLanes > n) x = hn::IfThenElse(hn::FirstN(d, n > j ? n - j : 0), x, neg_inf);
    if (j < skip) x = hn::IfThenElse(hn::FirstN(d, skip - j), neg_inf, x);  // below the window
    hn::StoreU(x, d, s + j);
    vmax = hn::Max(vmax, x);  // exact; which zero wins does not matter below
  }
  const float m_new = std::max(m, hn::GetLane(hn::MaxOfLanes(d, vmax)));
  const VF vm = hn::Set(d, m_new);
  // Sum of p over the tile: 8 lanes over j ascending, then the fixed tree.
  Acc8 sum = zero8();
  for (size_t j = 0; j < size_t(kKvTile); j += kChunk) {
    Acc8 e;
    for (size_t sub = 0; sub < kSub; ++sub) {
      e.v[sub] = hn::Exp(d, hn::Sub(hn::LoadU(d, s + j + sub * kLanes), vm));
      sum.v[sub] = hn::Add(sum.v[sub], e.v[sub]);
    }
    store8(e, s + j);
  }
  alpha = hn::GetLane(hn::Exp(d, hn::Set(d, m - m_new)));  // exp(-inf) = 0 on the first tile
  l = hn::GetLane(hn::MulAdd(hn::Set(d, l), hn::Set(d, alpha), hn::Set(d, reduce8(sum))));
  m = m_new;
}

// One token, kv heads [h0, h1) and their G query heads each: q and out are [(h1 - h0) * G, D];
// positions 0..pos of sequence `table` in a cache of T (float or F16). Heads are independent:
// which of them share a call changes only the loop order, never a head's arithmetic. The score
// and PV blocks read rows of KT: T itself, or f32 copies zero-padded to a multiple of 8 dims
// when D is not one (the same values, so the same bits as if T were read in place).
template <typename T, typename KT>
void attend(const float* q, size_t groups, size_t dim, int lo, int pos, const int32_t* table,
            const KvLayerRef& cache, int h0, int h1, float scale, float softcap, bool prefetch,
            float* out, AttnScratch& sc) {
  const DF d;
  const size_t dp = (dim + kChunk - 1) / kChunk * kChunk;
  const bool pad = dp != dim;
  const size_t heads = size_t(h1 - h0) * groups;
  const size_t row_stride = size_t(cache.kv_heads) * dim;
  const int bs = cache.block_size;
  std::fill(sc.acc.begin(), sc.acc.begin() + heads * dp, 0.0f);
  std::fill(sc.m.begin(), sc.m.begin() + heads, -HUGE_VALF);
  std::fill(sc.l.begin(), sc.l.begin() + heads, 0.0f);
  const float* qp = q;
  if (pad) {
    for (size_t i = 0; i < heads; ++i)
      std::copy(q + i * dim, q + (i + 1) * dim, sc.qpad.data() + i * dp);
    qp = sc.qpad.data();
  }
  const size_t q_stride = pad ? dp : dim;
  const size_t chunks = dp / kChunk;
  const PvFn* pv = pv_table<KT>();
  const QkFn* qk = qk_table<KT>();
  static_assert(std::is_same_v<KT, T> || std::is_same_v<KT, float>);
  assert(pad ? (std::is_same_v<KT, float>) : (std::is_same_v<KT, T>));
  const T* kc = static_cast<const T*>(cache.k);
  const T* vc = static_cast<const T*>(cache.v);

  // Positions lo..pos are visible (lo = 0 without a sliding window); tiles stay aligned to 0.
  for (int start = lo / kKvTile * kKvTile; start <= pos; start += kKvTile) {
    const size_t n = size_t(std::min(kKvTile, pos + 1 - start));
    const size_t skip = size_t(std::max(0, lo - start));  // masked positions of this tile
    for (size_t j = skip; j < n; ++j) {
      const int p = start + int(j);
      sc.rows[j] = (size_t(table[p / bs]) * size_t(bs) + size_t(p % bs)) * row_stride;
    }
    // Decode reads the cache from memory: fetch the next tile's rows (of heads h0..h1) into L2
    // while this one is computed. (A prefill finds them in cache, read by its earlier tokens.)
    const int next_end = prefetch ? std::min(start + 2 * kKvTile, pos + 1) : 0;
    const size_t span = size_t(h1 - h0) * dim * sizeof(T);
    for (int p = start + kKvTile; p < next_end; ++p) {
      const size_t off =
          ((size_t(table[p / bs]) * size_t(bs) + size_t(p % bs)) * row_stride + size_t(h0) * dim);
      const char* kr = reinterpret_cast<const char*>(kc + off);
      const char* vr = reinterpret_cast<const char*>(vc + off);
      for (size_t b = 0; b < span; b += 64) {
        __builtin_prefetch(kr + b, 0, 2);
        __builtin_prefetch(vr + b, 0, 2);
      }
    }
    for (int h = h0; h < h1; ++h) {
      const size_t hl = size_t(h - h0) * groups;  // first local query head of kv head h
      for (size_t j = 0; j < skip; ++j) {         // below the window: zeros, never the cache
        sc.kp[j] = sc.zero.data();
        sc.vp[j] = sc.zero.data();
      }
      for (size_t j = skip; j < n; ++j) {
        const T* kr = kc + sc.rows[j] + size_t(h) * dim;
        const T* vr = vc + sc.rows[j] + size_t(h) * dim;
        if (!pad) {  // read in place
          sc.kp[j] = kr;
          sc.vp[j] = vr;
        } else {  // zero-padded f32 copies, so every chunk below is a full one
          widen_row(kr, dim, sc.kpad.data() + j * dp);
          widen_row(vr, dim, sc.vpad.data() + j * dp);
          sc.kp[j] = sc.kpad.data() + j * dp;
          sc.vp[j] = sc.vpad.data() + j * dp;
        }
      }
      for (size_t g = 0; g < groups; g += kMaxGb) {
        const size_t gb = std::min(kMaxGb, groups - g);
        const size_t jb_max = std::min<size_t>(8, std::max<size_t>(1, kQkAcc / gb));
        for (size_t j0 = 0; j0 < n; j0 += jb_max) {
          const size_t jb = std::min(jb_max, n - j0);
          qk[(gb - 1) * 8 + (jb - 1)](qp + (hl + g) * q_stride, q_stride, sc.kp.data() + j0, dp,
                                      sc.scores.data() + (hl + g) * kKvTile + j0);
        }
      }
      for (size_t g = hl; g < hl + groups; ++g) {
        softmax_tile(sc.scores.data() + g * kKvTile, skip, n, scale, softcap, sc.m[g], sc.l[g],
                     sc.alpha[g]);
      }
      for (size_t g = 0; g < groups; g += kMaxGb) {
        const size_t gb = std::min(kMaxGb, groups - g);
        const size_t cb_max = std::min(kMaxCb, std::max<size_t>(1, kPvAcc / gb));
        for (size_t c = 0; c < chunks; c += cb_max) {
          const size_t cb = std::min(cb_max, chunks - c);
          pv[(gb - 1) * kMaxCb + (cb - 1)](sc.acc.data() + (hl + g) * dp, dp,
                                           sc.scores.data() + (hl + g) * kKvTile,
                                           sc.alpha.data() + hl + g, sc.vp.data(), n, c * kChunk);
        }
      }
    }
  }
  for (size_t i = 0; i < heads; ++i) {
    const VF vl = hn::Set(d, sc.l[i]);
    float* acc = sc.acc.data() + i * dp;
    for (size_t c = 0; c < dp; c += kLanes) {
      hn::StoreU(hn::Div(hn::LoadU(d, acc + c), vl), d, acc + c);
    }
    std::copy(acc, acc + dim, out + i * dim);
  }
}

void attention_impl(const float* q, const KvLayerRef& cache, const AttentionPlan& plan, int q_heads,
                    float scale, float* out, ThreadPool& pool) {
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
  std::vector<uint8_t> decode_of(static_cast<size_t>(tokens));
  double work = 0;
  for (int s = 0; s < num_seqs; ++s) {
    const int32_t b = plan.q_indptr[s], e = plan.q_indptr[s + 1];
    const int32_t first_pos = plan.kv_lens[s] - (e - b);
    assert(first_pos >= 0);
    for (int32_t t = b; t < e; ++t) {
      seq_of[size_t(t - t0)] = s;
      pos_of[size_t(t - t0)] = first_pos + (t - b);
      decode_of[size_t(t - t0)] = e - b <= 4;
      work += double(first_pos + (t - b) + 1);
    }
  }
  work *= double(q_heads) * double(dim);

  // Work items: a token with all its kv heads (one sweep over each cache block), or, when there
  // are too few tokens to keep the threads busy, one (token, kv head) each.
  const int heads_per_item = tokens >= 2 * int64_t(pool.size()) ? kv_heads : 1;
  const int64_t items = tokens * (kv_heads / heads_per_item);
  // Threads take items round-robin: later tokens of a causal prefill cost more.
  const int64_t lanes = work < 65536.0 ? 1 : std::min<int64_t>(pool.size(), items);
  const size_t max_heads = size_t(q_heads);
  const bool f16 = cache.dtype == DType::f16;
  assert(f16 || cache.dtype == DType::f32);
  const auto attend_fn = !f16        ? &attend<float, float>
                         : dp != dim ? &attend<F16, float>
                                     : &attend<F16, F16>;
  pool.parallel_for(lanes, 1, [&](int64_t b, int64_t e) HWY_ATTR {
    AttnScratch sc;
    sc.rows.resize(kKvTile);
    sc.kp.resize(kKvTile);
    sc.vp.resize(kKvTile);
    sc.scores.assign(max_heads * kKvTile, 0.0f);
    if (dp != dim) {
      sc.kpad.assign(size_t(kKvTile) * dp, 0.0f);
      sc.vpad.assign(size_t(kKvTile) * dp, 0.0f);
      sc.qpad.assign(max_heads * dp, 0.0f);
    }
    sc.acc.resize(max_heads * dp);
    sc.m.resize(max_heads);
    sc.l.resize(max_heads);
    sc.alpha.resize(max_heads);
    sc.zero.assign(dp, 0.0f);  // read as float or F16: all-zero bytes are +0 in both
    const int64_t per_token = kv_heads / heads_per_item;
    for (int64_t lane = b; lane < e; ++lane) {
      for (int64_t item = lane; item < items; item += lanes) {
        const int64_t t = item / per_token;
        const int h0 = int(item % per_token) * heads_per_item;
        const int s = seq_of[size_t(t)];
        const size_t head0 = size_t(t0 + t) * size_t(q_heads) + size_t(h0) * groups;
        const int pos = pos_of[size_t(t)];
        const int lo = plan.sliding_window > 0 ? std::max(0, pos - plan.sliding_window + 1) : 0;
        attend_fn(q + head0 * dim, groups, dim, lo, pos,
                  plan.block_tables + int64_t(s) * plan.max_blocks_per_seq, cache, h0,
                  h0 + heads_per_item, scale, plan.logit_softcap, decode_of[size_t(t)] != 0,
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
