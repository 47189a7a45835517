#include "service/executor.hpp"

namespace kiln::service {

TrainingResult TrainingExecutor::execute(ModelTable::Model& m, const TrainingRequest& req) {
  return std::visit(
      [&](const auto& r) -> TrainingResult {
        using R = std::decay_t<decltype(r)>;
        if constexpr (std::is_same_v<R, ForwardRequest>) {
          TrainingResult out = r.backward ? m.state->forward_backward(r.data, r.loss) : m.state->forward(r.data, r.loss);
          uint64_t tokens = 0;
          for (const auto& d : r.data) tokens += d.model_input.size();
          (r.backward ? tokens_trained_ : tokens_forward_) += tokens;
          return out;
        } else if constexpr (std::is_same_v<R, OptimStepRequest>) {
          OptimStepResult out{m.state->optim_step(r.adam, r.normalization)};
          ++optimizer_steps_;
          return out;
        } else if constexpr (std::is_same_v<R, SaveWeightsRequest>) {
          return checkpoints_.save_state(m, r);
        } else if constexpr (std::is_same_v<R, LoadWeightsRequest>) {
          return checkpoints_.load_state(m, r);
        } else if constexpr (std::is_same_v<R, SaveSamplerRequest>) {
          if (!r.sampling_session_seq_id) return checkpoints_.save_sampler(m, r);
          // Ephemeral: a snapshot in memory, no file, never listed (E21).
          auto weights = std::make_shared<const model::Transformer<float>>(m.state->model());
          const std::string id = Samplers::id_for(m.info.session_id, *r.sampling_session_seq_id);
          std::lock_guard lock(mu_);
          if (samplers_.add(m.tenant, {id, m.info.session_id, m.info.base_model, std::nullopt}, std::move(weights)))
            sessions_.record_sampler(m.info.session_id, id);
          return SaveResult{"", id};
        } else if constexpr (std::is_same_v<R, SaveExternalRequest>) {
          return checkpoints_.save_external(m, r);
        } else if constexpr (std::is_same_v<R, LoadAdapterRequest>) {
          return checkpoints_.load_adapter(m, r);
        } else {
          return UnloadResult{m.info.model_id};
        }
      },
      req);
}

}  // namespace kiln::service
