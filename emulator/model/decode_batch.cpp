#include "model/decode_batch.hpp"

#include <immintrin.h>
#include <omp.h>

#include <cmath>
#include <string>

#include "model/errors.hpp"
#include "model/init.hpp"
#include "model/threads.hpp"

namespace kiln::model {

// ---------------------------------------------------------------------------------------------
// Weights

namespace {

// The weight a frozen model computes with for `module`: W, plus s·B·A when it has an adapter.
// Returned row-major [out, in].
std::vector<float> effective(const Transformer<float>& m, const std::string& module, int64_t out, int64_t in) {
  const bool full = !m.is_frozen() && m.lora().full_parameter();
  const auto& src = full ? m.params() : m.base();
  const int w = src.find(module + ".weight");
  if (w < 0) throw InputError("weights", "model lacks tensor '" + module + ".weight'");
  std::vector<float> W(src[w].data.begin(), src[w].data.end());
  if (!full && !m.is_frozen()) {
    const int a = m.params().find(lora_a_name(module)), b = m.params().find(lora_b_name(module));
    if (a >= 0 && b >= 0) {
      const int64_t r = m.lora().rank;
      const double s = m.lora().scale();
      const CMatMap<float> A(m.params()[a].data.data(), r, in), B(m.params()[b].data.data(), out, r);
      MatMap<float>(W.data(), out, in) += (static_cast<float>(s) * B) * A;
    }
  }
  return W;
}

// [out, in] row-major → [in, out] row-major, appended to `dst` side by side with what it holds:
// dst becomes [in, width + out] when it held [in, width].
void append_transposed(std::vector<float>& dst, int64_t width, const std::vector<float>& w, int64_t out, int64_t in) {
  std::vector<float> merged(static_cast<size_t>(in * (width + out)));
  for (int64_t k = 0; k < in; ++k) {
    for (int64_t j = 0; j < width; ++j) merged[k * (width + out) + j] = dst[k * width + j];
    for (int64_t j = 0; j < out; ++j) merged[k * (width + out) + width + j] = w[j * in + k];
  }
  dst = std::move(merged);
}

std::vector<float> tensor(const Transformer<float>& m, const std::string& name) {
  const bool full = !m.is_frozen() && m.lora().full_parameter();
  const auto& src = full ? m.params() : m.base();
  const int i = src.find(name);
  if (i < 0) throw InputError("weights", "model lacks tensor '" + name + "'");
  return {src[i].data.begin(), src[i].data.end()};
}

}  // namespace

DecodeWeights::DecodeWeights(const Transformer<float>& m) : config(m.config()), fv(m.config().vocab_size) {
  const int64_t d = config.d_model, f = config.d_ff;
  if (config.factored_head()) {
    embed_hi = tensor(m, kEmbedHiName);
    embed_lo = tensor(m, kEmbedLoName);
  } else {
    embed = tensor(m, kEmbedName);
  }
  for (int l = 0; l < config.n_layers; ++l) {
    Layer L;
    L.norm1 = tensor(m, input_norm_name(l));
    L.norm2 = tensor(m, post_attn_norm_name(l));
    for (Proj p : {Proj::q, Proj::k, Proj::v})
      append_transposed(L.qkv_t, static_cast<int64_t>(L.qkv_t.size()) / d, effective(m, proj_name(l, p), d, d), d, d);
    append_transposed(L.o_t, 0, effective(m, proj_name(l, Proj::o), d, d), d, d);
    append_transposed(L.gate_up_t, 0, effective(m, proj_name(l, Proj::gate), f, d), f, d);
    append_transposed(L.gate_up_t, f, effective(m, proj_name(l, Proj::up), f, d), f, d);
    append_transposed(L.down_t, 0, effective(m, proj_name(l, Proj::down), d, f), d, f);
    layers.push_back(std::move(L));
  }
  final_norm = tensor(m, kFinalNormName);
  if (config.factored_head()) {
    append_transposed(head_t, 0, effective(m, kLmHeadHiModule, fv.A, d), fv.A, d);
    append_transposed(head_t, fv.A, effective(m, kLmHeadLoModule, fv.m, d), fv.m, d);
  } else {
    append_transposed(head_t, 0, effective(m, "lm_head", config.vocab_size, d), config.vocab_size, d);
  }
}

// ---------------------------------------------------------------------------------------------
// Row-independent kernels

namespace {

// NR rows × NV·8 columns of Y = X·Wt, each output an FMA chain over k in index order.
template <int NR, int NV>
void tile(const float* x, int64_t ldx, const float* wt, int64_t in, int64_t out, float* y, int64_t ldy) {
  __m256 acc[NR][NV];
  for (int r = 0; r < NR; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_setzero_ps();
  for (int64_t k = 0; k < in; ++k) {
    __m256 w[NV];
    for (int v = 0; v < NV; ++v) w[v] = _mm256_loadu_ps(wt + k * out + 8 * v);
    for (int r = 0; r < NR; ++r) {
      const __m256 xv = _mm256_set1_ps(x[r * ldx + k]);
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_fmadd_ps(xv, w[v], acc[r][v]);
    }
  }
  for (int r = 0; r < NR; ++r)
    for (int v = 0; v < NV; ++v) _mm256_storeu_ps(y + r * ldy + 8 * v, acc[r][v]);
}

// The same for the last n < 8 columns, in the low lanes of masked loads and stores: each output
// still the FMA chain over k in index order.
template <int NR>
void tile_tail(const float* x, int64_t ldx, const float* wt, int64_t in, int64_t out, float* y, int64_t ldy, int n) {
  const __m256i lanes = _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  __m256 acc[NR];
  for (int r = 0; r < NR; ++r) acc[r] = _mm256_setzero_ps();
  for (int64_t k = 0; k < in; ++k) {
    const __m256 w = _mm256_maskload_ps(wt + k * out, lanes);
    for (int r = 0; r < NR; ++r) acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(x[r * ldx + k]), w, acc[r]);
  }
  for (int r = 0; r < NR; ++r) _mm256_maskstore_ps(y + r * ldy, lanes, acc[r]);
}

// Fewer rows take wider tiles: a tile's NR·NV accumulators are its independent FMA chains, and
// one row with two of them would wait on the FMA latency instead of streaming the weights.
template <int NR>
void row_block(const float* x, int64_t ldx, const float* wt, int64_t in, int64_t out, float* y, int64_t ldy,
               int64_t j0, int64_t j1) {
  int64_t j = j0;
  if constexpr (NR == 1)
    for (; j + 64 <= j1; j += 64) tile<1, 8>(x, ldx, wt + j, in, out, y + j, ldy);
  if constexpr (NR <= 2)
    for (; j + 32 <= j1; j += 32) tile<NR, 4>(x, ldx, wt + j, in, out, y + j, ldy);
  for (; j + 16 <= j1; j += 16) tile<NR, 2>(x, ldx, wt + j, in, out, y + j, ldy);
  for (; j + 8 <= j1; j += 8) tile<NR, 1>(x, ldx, wt + j, in, out, y + j, ldy);
  if (j < j1) tile_tail<NR>(x, ldx, wt + j, in, out, y + j, ldy, static_cast<int>(j1 - j));
}

void rows_block(const float* x, int64_t nr, int64_t ldx, const float* wt, int64_t in, int64_t out, float* y,
                int64_t ldy, int64_t j0, int64_t j1) {
  switch (nr) {
    case 6: return row_block<6>(x, ldx, wt, in, out, y, ldy, j0, j1);
    case 5: return row_block<5>(x, ldx, wt, in, out, y, ldy, j0, j1);
    case 4: return row_block<4>(x, ldx, wt, in, out, y, ldy, j0, j1);
    case 3: return row_block<3>(x, ldx, wt, in, out, y, ldy, j0, j1);
    case 2: return row_block<2>(x, ldx, wt, in, out, y, ldy, j0, j1);
    default: return row_block<1>(x, ldx, wt, in, out, y, ldy, j0, j1);
  }
}

// out = x·rstd·g per row, rstd = 1/sqrt(mean(x²) + eps), as rmsnorm_forward computes it.
void rmsnorm_rows(float* out, const float* x, int64_t rows, int64_t d, const float* g, double eps) {
  for (int64_t r = 0; r < rows; ++r) {
    float sq = 0;
    for (int64_t i = 0; i < d; ++i) sq += x[r * d + i] * x[r * d + i];
    const float rstd = 1.0f / std::sqrt(sq / static_cast<float>(d) + static_cast<float>(eps));
    for (int64_t i = 0; i < d; ++i) out[r * d + i] = x[r * d + i] * rstd * g[i];
  }
}

// Rotates one row's heads at position p ("rotate half", as rope_apply).
void rope_row(float* x, int64_t p, const RopeTable<float>& rope, int64_t n_heads) {
  const int64_t half = rope.half, hd = 2 * half;
  for (int64_t h = 0; h < n_heads; ++h)
    for (int64_t i = 0; i < half; ++i) {
      const float c = rope.cos(p, i), s = rope.sin(p, i);
      const float a = x[h * hd + i], b = x[h * hd + half + i];
      x[h * hd + i] = a * c - b * s;
      x[h * hd + half + i] = b * c + a * s;
    }
}

// sc[j] = scale · Σ_i q[i]·kt[i·ld + j] for j < n (kt: one head's keys, a row per dimension):
// each score an FMA chain over the head's dimensions in order, eight positions per vector and
// four vectors at a time (independent chains), the last n % 8 in masked lanes.
void scores_row(float* sc, const float* q, const float* kt, int64_t ld, int64_t hd, int64_t n, float scale) {
  const __m256 s = _mm256_set1_ps(scale);
  int64_t j = 0;
  for (; j + 32 <= n; j += 32) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t i = 0; i < hd; ++i) {
      const __m256 qi = _mm256_set1_ps(q[i]);
      const float* r = kt + i * ld + j;
      a0 = _mm256_fmadd_ps(qi, _mm256_loadu_ps(r), a0);
      a1 = _mm256_fmadd_ps(qi, _mm256_loadu_ps(r + 8), a1);
      a2 = _mm256_fmadd_ps(qi, _mm256_loadu_ps(r + 16), a2);
      a3 = _mm256_fmadd_ps(qi, _mm256_loadu_ps(r + 24), a3);
    }
    _mm256_storeu_ps(sc + j, _mm256_mul_ps(a0, s));
    _mm256_storeu_ps(sc + j + 8, _mm256_mul_ps(a1, s));
    _mm256_storeu_ps(sc + j + 16, _mm256_mul_ps(a2, s));
    _mm256_storeu_ps(sc + j + 24, _mm256_mul_ps(a3, s));
  }
  for (; j + 8 <= n; j += 8) {
    __m256 a = _mm256_setzero_ps();
    for (int64_t i = 0; i < hd; ++i) a = _mm256_fmadd_ps(_mm256_set1_ps(q[i]), _mm256_loadu_ps(kt + i * ld + j), a);
    _mm256_storeu_ps(sc + j, _mm256_mul_ps(a, s));
  }
  if (j < n) {
    const __m256i lanes =
        _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n - j)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    __m256 a = _mm256_setzero_ps();
    for (int64_t i = 0; i < hd; ++i)
      a = _mm256_fmadd_ps(_mm256_set1_ps(q[i]), _mm256_maskload_ps(kt + i * ld + j, lanes), a);
    _mm256_maskstore_ps(sc + j, lanes, _mm256_mul_ps(a, s));
  }
}

// Brings the cache's transposed keys of layer l (KvCache::kt) up to position `upto`, exclusive,
// from K: the positions a prefill added since the last decode step.
void sync_transposed_keys(KvCache<float>& cache, size_t l, int64_t upto) {
  if (cache.kt.size() < cache.k.size()) cache.kt.resize(cache.k.size());
  const Mat<float>& K = cache.k[l];
  Mat<float>& kt = cache.kt[l];
  if (kt.cols() < K.rows()) kt.conservativeResize(K.cols(), K.rows());
  for (int64_t j = cache.kt_len; j < upto; ++j)
    for (int64_t i = 0; i < K.cols(); ++i) kt(i, j) = K(j, i);
}

// o[0, 8·NV) = Σ_j p[j]·v[j·ld + i], held in registers (accumulating in memory would put a store
// and a reload on every step). Each lane sums even and odd j in two FMA chains, in order, then
// adds them: one chain per lane would wait on the FMA latency at every key.
template <int NV>
void weighted_sum(float* o, const float* p, const float* v, int64_t ld, int64_t n) {
  __m256 even[NV], odd[NV];
  for (int k = 0; k < NV; ++k) even[k] = odd[k] = _mm256_setzero_ps();
  int64_t j = 0;
  for (; j + 2 <= n; j += 2) {
    const __m256 p0 = _mm256_set1_ps(p[j]), p1 = _mm256_set1_ps(p[j + 1]);
    for (int k = 0; k < NV; ++k) {
      even[k] = _mm256_fmadd_ps(p0, _mm256_loadu_ps(v + j * ld + 8 * k), even[k]);
      odd[k] = _mm256_fmadd_ps(p1, _mm256_loadu_ps(v + (j + 1) * ld + 8 * k), odd[k]);
    }
  }
  if (j < n) {
    const __m256 pj = _mm256_set1_ps(p[j]);
    for (int k = 0; k < NV; ++k) even[k] = _mm256_fmadd_ps(pj, _mm256_loadu_ps(v + j * ld + 8 * k), even[k]);
  }
  for (int k = 0; k < NV; ++k) _mm256_storeu_ps(o + 8 * k, _mm256_add_ps(even[k], odd[k]));
}

// out[d] = causal attention of one query over the cache's first n positions, head by head, the
// scores from the transposed keys Kt [d, ≥ n]. The scores live in 64-byte aligned scratch, so the
// vectorised exp treats every row alike.
void attend_row(float* out, const float* q, const Mat<float>& Kt, const Mat<float>& V, int64_t n, int64_t n_heads,
                AlignedVector<float>& scores) {
  const int64_t d = V.cols(), hd = d / n_heads, ld = Kt.cols();
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  if (static_cast<int64_t>(scores.size()) < n) scores.resize(static_cast<size_t>(n));
  Eigen::Map<Eigen::ArrayXf, Eigen::Aligned64> sc(scores.data(), n);
  for (int64_t h = 0; h < n_heads; ++h) {
    scores_row(sc.data(), q + h * hd, Kt.data() + h * hd * ld, ld, hd, n, scale);
    sc = (sc - sc.maxCoeff()).exp();
    const float inv_sum = 1.0f / sc.sum();
    for (int64_t j = 0; j < n; ++j) sc(j) *= inv_sum;
    float* o = out + h * hd;
    const float* vh = V.data() + h * hd;
    int64_t i = 0;
    for (; i + 32 <= hd; i += 32) weighted_sum<4>(o + i, sc.data(), vh + i, d, n);
    for (; i + 16 <= hd; i += 16) weighted_sum<2>(o + i, sc.data(), vh + i, d, n);
    for (; i + 8 <= hd; i += 8) weighted_sum<1>(o + i, sc.data(), vh + i, d, n);
    for (; i < hd; ++i) {  // the same two chains, one lane at a time
      float even = 0.0f, odd = 0.0f;
      int64_t j = 0;
      for (; j + 2 <= n; j += 2) {
        even = std::fma(sc(j), vh[j * d + i], even);
        odd = std::fma(sc(j + 1), vh[(j + 1) * d + i], odd);
      }
      if (j < n) even = std::fma(sc(j), vh[j * d + i], even);
      o[i] = even + odd;
    }
  }
}

// h[f] = silu(gate)·up for one row of [gate | up], vectorised in 64-byte aligned scratch so every
// row is computed alike wherever it sits.
void silu_gate_row(float* h, const float* gate_up, int64_t f, AlignedVector<float>& tmp) {
  if (static_cast<int64_t>(tmp.size()) < f) tmp.resize(static_cast<size_t>(f));
  Eigen::Map<Eigen::ArrayXf, Eigen::Aligned64> a(tmp.data(), f);
  a = Eigen::Map<const Eigen::ArrayXf>(gate_up, f);
  a = a / (1.0f + (-a).exp()) * Eigen::Map<const Eigen::ArrayXf>(gate_up + f, f);
  Eigen::Map<Eigen::ArrayXf>(h, f) = a;
}

}  // namespace

void rows_times_wt(const float* x, int64_t rows, int64_t ldx, const float* wt, int64_t in, int64_t out, float* y,
                   int64_t ldy) {
  // Blocks of 6 rows (6 × 16 tiles: twelve FMA chains, enough to cover the FMA latency, loading
  // 8 values per 12 FMAs), every row block against one 64-column panel of Wt before the
  // next panel (the panel stays in cache; the rows are few). Serial: decode_step gives each thread
  // its own rows instead.
  for (int64_t j0 = 0; j0 < out; j0 += 64)
    for (int64_t r0 = 0; r0 < rows; r0 += 6)
      rows_block(x + r0 * ldx, std::min<int64_t>(6, rows - r0), ldx, wt, in, out, y + r0 * ldy, ldy, j0,
                 std::min(out, j0 + 64));
}

// ---------------------------------------------------------------------------------------------
// The layers, for decode steps and prefills alike

namespace {

// A row of a batch: the token fed at position `pos` of `cache` (a decode step's rows are one per
// cache; a prefill's are one cache's consecutive positions).
struct RowAt {
  KvCache<float>* cache = nullptr;
  int64_t pos = 0;
  int64_t token = 0;
};

// The activations of a batch of rows, [rows, width] each.
struct Scratch {
  std::vector<float> x, xn, qkv, att, y, gu, h;
  void resize(int64_t rows, int64_t d, int64_t f) {
    for (auto* v : {&x, &xn, &att, &y}) v->resize(static_cast<size_t>(rows * d));
    qkv.resize(static_cast<size_t>(rows * 3 * d));
    gu.resize(static_cast<size_t>(rows * 2 * f));
    h.resize(static_cast<size_t>(rows * f));
  }
};

// f(lo, hi) over rows [0, n): on this thread, or in contiguous shares among the threads (each row
// is computed from its own inputs, so the split changes no number).
template <typename F>
void share_rows(int64_t n, bool parallel, const F& f) {
  if (!parallel) return f(int64_t{0}, n);
#pragma omp parallel num_threads(num_threads())
  {
    const int64_t t = omp_get_thread_num(), k = omp_get_num_threads();
    f(n * t / k, n * (t + 1) / k);
  }
}

// Every layer and the final norm for `rows`, which extend their caches: leaves the final-normed
// hidden states in s.xn [rows, d]. A row reads only its own activations and its cache's positions
// up to its own, so its numbers do not depend on the other rows.
void run_layers(const DecodeWeights& w, std::span<const RowAt> rows, Scratch& s, bool parallel) {
  const ModelConfig& c = w.config;
  const int64_t B = static_cast<int64_t>(rows.size()), d = c.d_model, f = c.d_ff, H = c.n_heads;
  thread_local AlignedVector<float> scores, silu;  // per thread
  s.resize(B, d, f);
  float *x = s.x.data(), *xn = s.xn.data(), *qkv = s.qkv.data(), *att = s.att.data(), *y = s.y.data(),
        *gu = s.gu.data(), *h = s.h.data();
  share_rows(B, parallel, [&](int64_t lo, int64_t hi) {
    for (int64_t b = lo; b < hi; ++b) {
      const int64_t t = rows[b].token;
      for (int64_t i = 0; i < d; ++i)
        x[b * d + i] = c.factored_head() ? w.embed_hi[w.fv.hi(t) * d + i] + w.embed_lo[w.fv.lo(t) * d + i]
                                         : w.embed[t * d + i];
    }
  });
  for (size_t l = 0; l < w.layers.size(); ++l) {
    const auto& L = w.layers[l];
    share_rows(B, parallel, [&](int64_t lo, int64_t hi) {
      rmsnorm_rows(xn + lo * d, x + lo * d, hi - lo, d, L.norm1.data(), c.norm_eps);
      rows_times_wt(xn + lo * d, hi - lo, d, L.qkv_t.data(), d, 3 * d, qkv + lo * 3 * d, 3 * d);
    });
    // Keys and values into the caches first: a prefill's later rows attend to its earlier ones.
    for (int64_t b = 0; b < B; ++b) {
      KvCache<float>& cache = *rows[b].cache;
      const int64_t p = rows[b].pos;
      float* q = qkv + b * 3 * d;
      rope_row(q, p, cache.rope, H);
      rope_row(q + d, p, cache.rope, H);
      if (b == 0 || rows[b - 1].cache != &cache) sync_transposed_keys(cache, l, p);
      for (int64_t i = 0; i < d; ++i) {
        cache.k[l](p, i) = cache.kt[l](i, p) = q[d + i];
        cache.v[l](p, i) = q[2 * d + i];
      }
    }
    share_rows(B, parallel, [&](int64_t lo, int64_t hi) {
      for (int64_t b = lo; b < hi; ++b) {
        const KvCache<float>& cache = *rows[b].cache;
        attend_row(att + b * d, qkv + b * 3 * d, cache.kt[l], cache.v[l], rows[b].pos + 1, H, scores);
      }
    });
    share_rows(B, parallel, [&](int64_t lo, int64_t hi) {
      const int64_t n = hi - lo;
      rows_times_wt(att + lo * d, n, d, L.o_t.data(), d, d, y + lo * d, d);
      for (int64_t i = lo * d; i < hi * d; ++i) x[i] += y[i];
      rmsnorm_rows(xn + lo * d, x + lo * d, n, d, L.norm2.data(), c.norm_eps);
      rows_times_wt(xn + lo * d, n, d, L.gate_up_t.data(), d, 2 * f, gu + lo * 2 * f, 2 * f);
      for (int64_t b = lo; b < hi; ++b) silu_gate_row(h + b * f, gu + b * 2 * f, f, silu);
      rows_times_wt(h + lo * f, n, f, L.down_t.data(), f, d, y + lo * d, d);
      for (int64_t i = lo * d; i < hi * d; ++i) x[i] += y[i];
    });
  }
  // Every layer's kt holds the new positions too (a cache's rows come in increasing positions).
  for (const auto& r : rows) r.cache->kt_len = r.cache->len = r.pos + 1;
  share_rows(B, parallel, [&](int64_t lo, int64_t hi) {
    rmsnorm_rows(xn + lo * d, x + lo * d, hi - lo, d, w.final_norm.data(), c.norm_eps);
  });
}

// The step for a contiguous run of slots, on this thread; writes their head scores to z (row
// stride = head width). A row's numbers depend only on its own slot.
void decode_rows(const DecodeWeights& w, std::span<const DecodeSlot> slots, float* z) {
  thread_local std::vector<RowAt> rows;  // scratch kept between steps
  thread_local Scratch s;
  rows.clear();
  for (const auto& slot : slots) rows.push_back({slot.cache, slot.cache->len, slot.token});
  run_layers(w, rows, s, false);
  const int64_t d = w.config.d_model, width = w.head_width();
  rows_times_wt(s.xn.data(), static_cast<int64_t>(rows.size()), d, w.head_t.data(), d, width, z, width);
}

// The head's scores [rows, width] into `out`: split into hi and lo when factored (into their
// buffers when the shapes match).
void head_scores_into(const DecodeWeights& w, const Mat<float>& z, HeadScores<float>& out) {
  out.factored = w.config.factored_head();
  if (out.factored) {
    out.fv = w.fv;
    out.hi = z.leftCols(w.fv.A);
    out.lo = z.rightCols(w.fv.m);
  } else {
    out.logits = z;
  }
}

// A prefill runs its positions in chunks of this many rows: the scratch stays small, and since a
// row does not depend on the others, the chunking changes no number.
constexpr int64_t kPrefillChunk = 256;

}  // namespace

Mat<float> prefill(const DecodeWeights& w, KvCache<float>& cache, std::span<const int64_t> tokens) {
  const ModelConfig& c = w.config;
  const int64_t m = static_cast<int64_t>(tokens.size()), p0 = cache.len, d = c.d_model;
  if (m == 0) throw InputError("tokens", "at least one token is required");
  if (p0 + m > c.max_context)
    throw InputError("tokens", "sequence length " + std::to_string(p0 + m) + " exceeds the model's max_context " +
                                   std::to_string(c.max_context));
  for (int64_t t = 0; t < m; ++t)
    if (tokens[t] < 0 || tokens[t] >= c.vocab_size)
      throw InputError("tokens[" + std::to_string(t) + "]", "token id " + std::to_string(tokens[t]) +
                                                               " is out of range [0, " + std::to_string(c.vocab_size) + ")");
  cache.reserve(c, p0 + m);
  Mat<float> hidden(m, d);
  Scratch s;
  std::vector<RowAt> rows;
  for (int64_t c0 = 0; c0 < m; c0 += kPrefillChunk) {
    const int64_t n = std::min(kPrefillChunk, m - c0);
    rows.clear();
    for (int64_t i = 0; i < n; ++i) rows.push_back({&cache, p0 + c0 + i, tokens[c0 + i]});
    run_layers(w, rows, s, threads_for(n) > 1);
    hidden.middleRows(c0, n) = CMatMap<float>(s.xn.data(), n, d);
  }
  return hidden;
}

HeadScores<float> head_scores(const DecodeWeights& w, const Mat<float>& hidden) {
  const int64_t width = w.head_width(), d = w.config.d_model;
  Mat<float> z(hidden.rows(), width);
  rows_times_wt(hidden.data(), hidden.rows(), d, w.head_t.data(), d, width, z.data(), width);
  HeadScores<float> out;
  head_scores_into(w, z, out);
  return out;
}

HeadScores<float> decode_step(const DecodeWeights& w, std::span<const DecodeSlot> slots) {
  HeadScores<float> out;
  decode_step(w, slots, out);
  return out;
}

void decode_step(const DecodeWeights& w, std::span<const DecodeSlot> slots, HeadScores<float>& out) {
  const ModelConfig& c = w.config;
  const int64_t B = static_cast<int64_t>(slots.size()), width = w.head_width();
  for (const auto& s : slots) {
    if (s.cache->len + 1 > c.max_context)
      throw InputError("tokens", "sequence length " + std::to_string(s.cache->len + 1) +
                                     " exceeds the model's max_context " + std::to_string(c.max_context));
    if (s.token < 0 || s.token >= c.vocab_size)
      throw InputError("tokens", "token id " + std::to_string(s.token) + " is out of range [0, " +
                                     std::to_string(c.vocab_size) + ")");
    s.cache->reserve(c, s.cache->len + 1);
  }
  thread_local Mat<float> scratch;  // the calling thread's, kept between steps
  scratch.resize(B, width);
  float* const z = scratch.data();  // (a thread of the region below would see its own scratch)
  // One parallel region per step: each thread decodes a contiguous share of the slots from start to
  // end (the rows never meet, so the split changes no number), enough rows each to batch well.
  const int threads = static_cast<int>(std::min<int64_t>(num_threads(), B / 8));
  if (threads <= 1) {
    decode_rows(w, slots, z);
  } else {
#pragma omp parallel num_threads(threads)
    {
      // Shared among the threads granted, which may be fewer than asked (inside another region).
      const int64_t t = omp_get_thread_num(), n = omp_get_num_threads(), lo = B * t / n, hi = B * (t + 1) / n;
      decode_rows(w, slots.subspan(static_cast<size_t>(lo), static_cast<size_t>(hi - lo)), z + lo * width);
    }
  }
  head_scores_into(w, scratch, out);
}

}  // namespace kiln::model
