#include "client/proto_codec.hpp"

#include <zstd.h>

#include <cstring>

#include "client/errors.hpp"
#include "tinker_public.pb.h"

namespace kiln::client {

namespace {

template <typename T>
std::string pack(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

ApiError decode_error(const std::string& why) { return ApiError(200, "", "Proto deserialization failed: " + why); }

}  // namespace

std::string forward_request_to_proto(const std::string& model_id, int64_t seq_id, const std::vector<Datum>& data,
                                     const std::string& loss_fn, const nlohmann::json& config, bool forward_only) {
  tinker_public::ForwardBackwardRequest msg;
  msg.set_model_id(model_id);
  msg.set_seq_id(static_cast<int32_t>(seq_id));
  msg.set_loss_fn(loss_fn);
  msg.set_forward_only(forward_only);
  for (const auto& [k, v] : config.items()) {
    if (!v.is_number()) throw ClientError("loss_fn_config['" + k + "'] must be a number on the protobuf transport");
    (*msg.mutable_loss_fn_config())[k] = v.get<double>();
  }
  for (const auto& d : data) {
    auto* datum = msg.add_data();
    datum->add_model_input()->mutable_encoded_text()->set_tokens(
        pack(std::vector<int32_t>(d.model_input.begin(), d.model_input.end())));
    for (const auto& [name, t] : d.loss_fn_inputs) {
      auto& out = (*datum->mutable_loss_fn_inputs())[name];
      if (t.dtype == "int64") {
        out.set_dtype(tinker_public::DTYPE_INT64);
        out.set_dense(pack(std::vector<int64_t>(t.data.begin(), t.data.end())));
      } else {
        out.set_dtype(tinker_public::DTYPE_FLOAT32);
        out.set_dense(pack(std::vector<float>(t.data.begin(), t.data.end())));
      }
      for (int64_t s : t.shape) out.add_shape(s);
    }
  }
  return msg.SerializeAsString();
}

ForwardBackwardOutput forward_output_from_proto(const std::string& bytes) {
  tinker_public::ForwardBackwardOutput msg;
  if (!msg.ParseFromString(bytes)) throw decode_error("not a tinker_public.ForwardBackwardOutput");
  ForwardBackwardOutput out;
  out.loss_fn_output_type = msg.loss_fn_output_type();
  for (const auto& [k, v] : msg.metrics()) out.metrics[k] = v;
  for (const auto& rec : msg.loss_fn_outputs()) {
    const size_t first = out.loss_fn_outputs.size();
    out.loss_fn_outputs.resize(first + static_cast<size_t>(rec.num_datums()));
    for (const auto& [name, bt] : rec.fields()) {
      if (bt.dtype() != tinker_public::DTYPE_FLOAT32) throw decode_error("field '" + name + "' is not float32");
      std::vector<int64_t> offsets(bt.offsets().size() / sizeof(int64_t));
      std::memcpy(offsets.data(), bt.offsets().data(), offsets.size() * sizeof(int64_t));
      if (offsets.size() != static_cast<size_t>(rec.num_datums()) + 1) throw decode_error("field '" + name + "' has bad offsets");
      int64_t row = 1;
      for (int64_t s : bt.trailing_shape()) row *= s;
      for (int64_t i = 0; i < rec.num_datums(); ++i) {
        const int64_t a = offsets[i], b = offsets[i + 1];
        if (a < 0 || b < a || b > static_cast<int64_t>(bt.data().size()) || (b - a) % 4)
          throw decode_error("field '" + name + "' has offsets outside its data");
        std::vector<float> v(static_cast<size_t>((b - a) / 4));
        std::memcpy(v.data(), bt.data().data() + a, static_cast<size_t>(b - a));
        TensorData t;
        t.data.assign(v.begin(), v.end());
        t.shape = {static_cast<int64_t>(v.size()) / std::max<int64_t>(row, 1)};
        t.shape.insert(t.shape.end(), bt.trailing_shape().begin(), bt.trailing_shape().end());
        out.loss_fn_outputs[first + static_cast<size_t>(i)][name] = std::move(t);
      }
    }
  }
  return out;
}

std::string zstd_compress(const std::string& bytes, int level) {
  std::string frame(ZSTD_compressBound(bytes.size()), '\0');
  const size_t n = ZSTD_compress(frame.data(), frame.size(), bytes.data(), bytes.size(), level);
  if (ZSTD_isError(n)) throw ClientError(std::string("zstd compression failed: ") + ZSTD_getErrorName(n));
  frame.resize(n);
  return frame;
}

}  // namespace kiln::client
