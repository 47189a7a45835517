// Incremental inference for sampling: the forward pass of transformer.cpp, one chunk of new
// positions at a time, with each layer's keys and values kept in a KvCache so a generated token
// costs O(context) attention instead of a whole forward over the prefix.
#include <algorithm>
#include <string>

#include "model/errors.hpp"
#include "model/init.hpp"
#include "model/transformer.hpp"

namespace kiln::model {

namespace {

// Causal attention of m new queries (positions p0..p0+m-1) over the cached keys 0..p0+m-1.
// out[m,d] is overwritten; heads run in parallel and write disjoint columns.
template <typename T>
void attention_extend(Mat<T>& out, const Mat<T>& q, const Mat<T>& K, const Mat<T>& V, int64_t p0, int64_t n_heads) {
  const int64_t m = q.rows(), d = q.cols(), hd = d / n_heads, L = p0 + m;
  const T scale = T(1) / std::sqrt(T(hd));
  out.resize(m, d);
#pragma omp parallel num_threads(threads_for(m))
  {
    Mat<T> P;  // per-thread scores [m, L]
#pragma omp for schedule(static)
    for (int64_t h = 0; h < n_heads; ++h) {
      const Eigen::OuterStride<> st(d);
      const CBlockMap<T> Q(q.data() + h * hd, m, hd, st), Kh(K.data() + h * hd, L, hd, st),
          Vh(V.data() + h * hd, L, hd, st);
      P.noalias() = (Q * scale) * Kh.transpose();
      for (int64_t i = 0; i < m; ++i) {  // query i sees keys j <= p0 + i
        const int64_t seen = p0 + i + 1;
        auto row = P.row(i).head(seen).array();
        row = (row - row.maxCoeff()).exp();
        row /= row.sum();
        P.row(i).tail(L - seen).setZero();
      }
      BlockMap<T>(out.data() + h * hd, m, hd, st).noalias() = P * Vh;
    }
  }
}

}  // namespace

template <typename T>
Mat<T> Transformer<T>::extend(KvCache<T>& cache, std::span<const int64_t> tokens) const {
  const int64_t d = config_.d_model, H = config_.n_heads, m = static_cast<int64_t>(tokens.size());
  const int64_t p0 = cache.len, V = config_.vocab_size;
  if (m == 0) throw InputError("tokens", "at least one token is required");
  if (p0 + m > config_.max_context)
    throw InputError("tokens", "sequence length " + std::to_string(p0 + m) + " exceeds the model's max_context " +
                                   std::to_string(config_.max_context));
  for (int64_t t = 0; t < m; ++t)
    if (tokens[t] < 0 || tokens[t] >= V)
      throw InputError("tokens[" + std::to_string(t) + "]", "token id " + std::to_string(tokens[t]) +
                                                               " is out of range [0, " + std::to_string(V) + ")");
  cache.reserve(config_, p0 + m);
  std::vector<int64_t> pos(static_cast<size_t>(m));
  for (int64_t t = 0; t < m; ++t) pos[t] = p0 + t;

  Mat<T> x, xn, q, k, v, att, gate, up, h, u, y;
  embed(x, std::vector<int64_t>(tokens.begin(), tokens.end()));
  Vec<T> rstd;
  for (size_t l = 0; l < layers_.size(); ++l) {
    const LayerSpec& S = layers_[l];
    auto P = [&](Proj p) { return resolve(S.proj[static_cast<int>(p)], nullptr); };
    // Attention: new keys and values go into the cache, then the new queries read all of it.
    rmsnorm_forward(xn, rstd, x, ptr(S.norm1), config_.norm_eps);
    q.resize(m, d);
    k.resize(m, d);
    v.resize(m, d);
    linear_forward<T>(q, u, xn, P(Proj::q));
    linear_forward<T>(k, u, xn, P(Proj::k));
    linear_forward<T>(v, u, xn, P(Proj::v));
    rope_forward(q, pos, cache.rope, H);
    rope_forward(k, pos, cache.rope, H);
    cache.k[l].middleRows(p0, m) = k;
    cache.v[l].middleRows(p0, m) = v;
    attention_extend(att, q, cache.k[l], cache.v[l], p0, H);
    y.resize(m, d);
    linear_forward<T>(y, u, att, P(Proj::o));
    x += y;
    // SwiGLU MLP.
    rmsnorm_forward(xn, rstd, x, ptr(S.norm2), config_.norm_eps);
    gate.resize(m, config_.d_ff);
    up.resize(m, config_.d_ff);
    linear_forward<T>(gate, u, xn, P(Proj::gate));
    linear_forward<T>(up, u, xn, P(Proj::up));
    swiglu_forward(h, gate, up);
    linear_forward<T>(y, u, h, P(Proj::down));
    x += y;
  }
  cache.len = p0 + m;
  rmsnorm_forward(xn, rstd, x, ptr(final_norm_), config_.norm_eps);
  return xn;
}

template <typename T>
HeadScores<T> Transformer<T>::head_scores(const Mat<T>& hidden) const {
  HeadScores<T> s;
  Mat<T> u;
  if (config_.factored_head()) {
    s.factored = true;
    s.fv = fv_;
    s.hi.resize(hidden.rows(), fv_.A);
    s.lo.resize(hidden.rows(), fv_.m);
    linear_forward<T>(s.hi, u, hidden, resolve(head_hi_, nullptr));
    linear_forward<T>(s.lo, u, hidden, resolve(head_lo_, nullptr));
  } else {
    s.logits.resize(hidden.rows(), config_.vocab_size);
    linear_forward<T>(s.logits, u, hidden, resolve(head_, nullptr));
  }
  return s;
}

template Mat<float> Transformer<float>::extend(KvCache<float>&, std::span<const int64_t>) const;
template Mat<double> Transformer<double>::extend(KvCache<double>&, std::span<const int64_t>) const;
template HeadScores<float> Transformer<float>::head_scores(const Mat<float>&) const;
template HeadScores<double> Transformer<double>::head_scores(const Mat<double>&) const;

}  // namespace kiln::model
