#include "service/requests.hpp"

#include <cstring>
#include <type_traits>

#include "model/rng.hpp"

namespace kiln::service {

namespace {

// FNV-1a over everything fed to it.
struct Hasher {
  uint64_t h = model::fnv1a64(nullptr, 0);
  void bytes(const void* p, size_t n) { h = model::fnv1a64(p, n, h); }
  template <typename T>
    requires std::is_arithmetic_v<T>
  void operator()(T v) {
    bytes(&v, sizeof v);
  }
  void operator()(const std::string& s) {
    (*this)(s.size());
    bytes(s.data(), s.size());
  }
  template <typename T>
  void operator()(const std::vector<T>& v) {
    (*this)(v.size());
    for (const auto& x : v) (*this)(x);
  }
  void operator()(const std::map<std::string, std::string>& m) {
    (*this)(m.size());
    for (const auto& [k, v] : m) (*this)(k), (*this)(v);
  }
  template <typename T>
  void operator()(const std::optional<T>& v) {
    (*this)(v.has_value());
    if (v) (*this)(*v);
  }
  void operator()(const train::ConfigValue& v) {
    (*this)(v.index());
    std::visit([&](const auto& x) { (*this)(x); }, v);
  }
  void operator()(const train::TensorData& t) {
    (*this)(static_cast<int>(t.dtype));
    (*this)(t.shape);
    (*this)(t.data);
  }
};

}  // namespace

uint64_t fingerprint(const model::SampleSpec& s) {
  Hasher h;
  h(s.prompt), h(s.num_samples), h(s.prompt_logprobs), h(s.topk_prompt_logprobs);
  h(s.topk_sample_logprobs), h(s.prompt_alt_tokens_k), h(s.target_prompt_logprobs.has_value());
  if (const auto& t = s.target_prompt_logprobs) h(t->rows), h(t->k), h(t->ids), h(t->crow), h(t->col);
  const auto& p = s.params;
  h(p.max_tokens), h(p.seed), h(p.stop_strings), h(p.stop_tokens), h(p.end_of_sequence), h(p.temperature), h(p.top_k),
      h(p.top_p);
  return h.h;
}

uint64_t fingerprint(const TrainingRequest& r) {
  Hasher h;
  h(r.index());
  std::visit(
      [&](const auto& q) {
        using Q = std::decay_t<decltype(q)>;
        if constexpr (std::is_same_v<Q, ForwardRequest>) {
          h(q.backward);
          h(q.loss_fn);
          for (const auto& [k, v] : q.loss_fn_config) h(k), h(v);
          h(q.data.size());
          for (const auto& d : q.data) {
            h(d.model_input);
            for (const auto& [k, t] : d.loss_fn_inputs) h(k), h(t);
          }
          for (const auto& d : q.spans)
            for (const auto* runs : {&d.model_input, &d.loss_fn_inputs}) {
              h(runs->size());
              for (const auto& r : *runs) h(r.sampled), h(r.sequence_id), h(r.offset), h(r.length);
            }
        } else if constexpr (std::is_same_v<Q, OptimStepRequest>) {
          const auto& a = q.adam;
          h(a.learning_rate), h(a.beta1), h(a.beta2), h(a.eps), h(a.weight_decay), h(a.grad_clip_norm);
          h(static_cast<int>(a.emit_grad_norm_metrics)), h(static_cast<int>(q.normalization));
        } else if constexpr (std::is_same_v<Q, SaveWeightsRequest>) {
          h(q.name), h(q.ttl_seconds), h(q.overwrite), h(q.user_metadata);
        } else if constexpr (std::is_same_v<Q, LoadWeightsRequest>) {
          h(q.path), h(q.optimizer), h(q.access_key);
        } else if constexpr (std::is_same_v<Q, SaveSamplerRequest>) {
          h(q.name), h(q.ttl_seconds), h(q.checkpoint_type), h(q.sampling_session_seq_id), h(q.user_metadata);
        } else if constexpr (std::is_same_v<Q, SaveExternalRequest>) {
          h(q.name), h(q.ttl_seconds);
        } else if constexpr (std::is_same_v<Q, LoadAdapterRequest>) {
          h(q.adapter_path);
        }
      },
      r);
  return h.h;
}

}  // namespace kiln::service
