#include "wire/proto_codec.hpp"

#include <zstd.h>

#include <algorithm>
#include <cstring>
#include <type_traits>

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>

#include "tinker_public.pb.h"
#include "train/errors.hpp"
#include "wire/sparse_csr.hpp"

namespace kiln::wire {

using train::InvalidRequest;

std::string zstd_decompress(const std::string& frame, size_t max_bytes) {
  ZSTD_DCtx* ctx = ZSTD_createDCtx();
  std::string out;
  ZSTD_inBuffer in{frame.data(), frame.size(), 0};
  std::string chunk(ZSTD_DStreamOutSize(), '\0');
  size_t ret = 1;
  while (in.pos < in.size) {
    ZSTD_outBuffer o{chunk.data(), chunk.size(), 0};
    ret = ZSTD_decompressStream(ctx, &o, &in);
    if (ZSTD_isError(ret)) {
      ZSTD_freeDCtx(ctx);
      throw InvalidRequest(std::string("body is not a valid zstd frame: ") + ZSTD_getErrorName(ret));
    }
    out.append(chunk.data(), o.pos);
    if (out.size() > max_bytes) {
      ZSTD_freeDCtx(ctx);
      throw InvalidRequest("decompressed body exceeds " + std::to_string(max_bytes) + " bytes");
    }
    if (ret == 0 && in.pos < in.size) break;  // trailing data after the frame
  }
  ZSTD_freeDCtx(ctx);
  if (ret != 0) throw InvalidRequest("body is a truncated zstd frame");
  return out;
}

namespace {

template <typename T>
std::vector<T> unpack(const std::string& bytes, const std::string& field) {
  if (bytes.size() % sizeof(T) != 0)
    throw InvalidRequest("field '" + field + "' has " + std::to_string(bytes.size()) + " bytes, not a multiple of " +
                         std::to_string(sizeof(T)));
  std::vector<T> out(bytes.size() / sizeof(T));
  if (!out.empty()) std::memcpy(out.data(), bytes.data(), bytes.size());  // little-endian, as this machine
  return out;
}

// Values of a dtype as doubles (bfloat16 is the top half of a float32).
std::vector<double> values_of(const std::string& bytes, tinker_public::DType dtype, const std::string& field) {
  std::vector<double> out;
  switch (dtype) {
    case tinker_public::DTYPE_FLOAT32:
      for (float v : unpack<float>(bytes, field)) out.push_back(v);
      break;
    case tinker_public::DTYPE_INT64:
      for (int64_t v : unpack<int64_t>(bytes, field)) out.push_back(static_cast<double>(v));
      break;
    case tinker_public::DTYPE_INT32:
      for (int32_t v : unpack<int32_t>(bytes, field)) out.push_back(v);
      break;
    case tinker_public::DTYPE_BFLOAT16:
      for (uint16_t b : unpack<uint16_t>(bytes, field)) {
        const uint32_t bits = static_cast<uint32_t>(b) << 16;
        float f;
        std::memcpy(&f, &bits, 4);
        out.push_back(f);
      }
      break;
    default:
      throw InvalidRequest("field '" + field + "' has an unspecified dtype");
  }
  return out;
}

train::TensorData tensor_from_proto(const tinker_public::Tensor& t, const std::string& field) {
  train::TensorData out;
  const bool integer = t.dtype() == tinker_public::DTYPE_INT64 || t.dtype() == tinker_public::DTYPE_INT32;
  out.dtype = integer ? train::DType::int64 : train::DType::float32;
  out.shape.assign(t.shape().begin(), t.shape().end());
  if (t.has_sparse_csr()) {
    const auto values = values_of(t.sparse_csr().values(), t.dtype(), field + ".sparse_csr.values");
    const auto crow = unpack<int64_t>(t.sparse_csr().crow_indices(), field + ".sparse_csr.crow_indices");
    const auto col = unpack<int64_t>(t.sparse_csr().col_indices(), field + ".sparse_csr.col_indices");
    out.data = dense_from_csr(values, crow, col, out.shape, field);
    return out;
  }
  out.data = values_of(t.dense(), t.dtype(), field + ".dense");
  if (out.shape.empty()) out.shape = {static_cast<int64_t>(out.data.size())};
  return out;
}

}  // namespace

ProtoForwardBackward forward_backward_from_proto(const std::string& bytes) {
  tinker_public::ForwardBackwardRequest msg;
  if (!msg.ParseFromString(bytes)) throw InvalidRequest("body is not a valid tinker_public.ForwardBackwardRequest");
  ProtoForwardBackward out;
  out.model_id = msg.model_id();
  out.seq_id = msg.seq_id();
  out.request.backward = !msg.forward_only();
  out.request.loss_fn = msg.loss_fn();
  for (const auto& [k, v] : msg.loss_fn_config()) out.request.loss_fn_config[k] = v;
  for (const auto& [k, v] : msg.loss_fn_config_v2()) {
    if (v.has_number())
      out.request.loss_fn_config[k] = v.number();
    else if (v.has_text())
      out.request.loss_fn_config[k] = v.text();
    else
      throw InvalidRequest("field 'loss_fn_config_v2." + k + "' has no value (expected number or text)");
  }
  for (int i = 0; i < msg.data_size(); ++i) {
    const auto& d = msg.data(i);
    const std::string field = "data[" + std::to_string(i) + "]";
    train::Datum datum;
    for (int c = 0; c < d.model_input_size(); ++c) {
      const auto& chunk = d.model_input(c);
      if (!chunk.has_encoded_text())
        throw InvalidRequest("field '" + field + ".model_input[" + std::to_string(c) +
                             "]': only encoded_text chunks are supported (Kiln's models take text tokens only)");
      for (int32_t t : unpack<int32_t>(chunk.encoded_text().tokens(), field + ".model_input.tokens"))
        datum.model_input.push_back(t);
    }
    for (const auto& [name, tensor] : d.loss_fn_inputs())
      datum.loss_fn_inputs[name] = tensor_from_proto(tensor, field + ".loss_fn_inputs." + name);
    out.request.data.push_back(std::move(datum));
    // Provenance spans (fields 3 and 4): one entry per datum once any datum has some.
    service::DatumSpans spans;
    const auto runs = [](const auto& list, std::vector<service::ProvenanceSpan>& into) {
      for (const auto& s : list) {
        const auto& t = s.has_prompt_tokens() ? s.prompt_tokens() : s.sampled_tokens();
        into.push_back({!s.has_prompt_tokens(), t.sequence_id(), t.offset(), t.length()});
      }
    };
    runs(d.model_input_spans(), spans.model_input);
    runs(d.loss_fn_input_spans(), spans.loss_fn_inputs);
    out.request.spans.push_back(std::move(spans));
  }
  auto& spans = out.request.spans;
  if (std::all_of(spans.begin(), spans.end(), [](const auto& s) { return s == service::DatumSpans{}; })) spans.clear();
  return out;
}

namespace {

std::string pack_floats(const std::vector<double>& v) {
  std::string out(v.size() * sizeof(float), '\0');
  for (size_t i = 0; i < v.size(); ++i) {
    const float f = static_cast<float>(v[i]);
    std::memcpy(out.data() + i * sizeof(float), &f, sizeof f);
  }
  return out;
}

}  // namespace

template <typename T>
std::string pack(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

namespace {

// Rows of up to k (token, logprob) as dense matrices; short and empty rows are padded with the
// sentinels the SDK strips (token 0, logprob -99999).
void put_topk(const std::vector<model::TopK>& rows, tinker_public::TopkLogprobs* topk) {
  size_t k = 0;
  for (const auto& row : rows) k = std::max(k, row.size());
  std::vector<int32_t> ids(rows.size() * k, 0);
  std::vector<float> lps(rows.size() * k, -99999.0f);
  for (size_t t = 0; t < rows.size(); ++t)
    for (size_t j = 0; j < rows[t].size(); ++j) {
      ids[t * k + j] = static_cast<int32_t>(rows[t][j].first);
      lps[t * k + j] = rows[t][j].second;
    }
  topk->set_token_ids(pack(ids));
  topk->set_logprobs(pack(lps));
  topk->set_k(static_cast<uint32_t>(k));
  topk->set_length(static_cast<uint32_t>(rows.size()));
}

// A [rows, k] tensor of `values`: dense, or in a CSR layout (values are the listed cells then).
template <typename T>
void put_tensor(const std::vector<T>& values, int64_t rows, int64_t k, tinker_public::Tensor* t,
                const std::vector<int64_t>& crow = {}, const std::vector<int64_t>& col = {}) {
  t->set_dtype(std::is_floating_point_v<T> ? tinker_public::DTYPE_FLOAT32 : tinker_public::DTYPE_INT64);
  t->add_shape(rows);
  t->add_shape(k);
  if (crow.empty()) {
    t->set_dense(pack(values));
    return;
  }
  auto* csr = t->mutable_sparse_csr();
  csr->set_values(pack(values));
  csr->set_crow_indices(pack(crow));
  csr->set_col_indices(pack(col));
}

}  // namespace

std::string sample_result_to_proto(const model::SampleOutput& r) {
  tinker_public::SampleResponse msg;
  for (const auto& q : r.sequences) {
    auto* seq = msg.add_sequences();
    seq->set_stop_reason(q.stopped ? tinker_public::STOP_REASON_STOP : tinker_public::STOP_REASON_LENGTH);
    seq->set_tokens(pack(std::vector<int32_t>(q.tokens.begin(), q.tokens.end())));
    seq->set_logprobs(pack(q.logprobs));
    if (q.topk_logprobs) put_topk(*q.topk_logprobs, seq->mutable_topk_sampled_logprobs());
  }
  if (r.prompt_logprobs) msg.set_prompt_logprobs(pack(*r.prompt_logprobs));
  if (r.topk_prompt_logprobs) put_topk(*r.topk_prompt_logprobs, msg.mutable_topk_prompt_logprobs());
  if (const auto& t = r.target_prompt_logprobs)  // in the request's layout
    put_tensor(t->crow.empty() ? t->values : t->listed(), t->rows, t->k, msg.mutable_target_prompt_logprobs(), t->crow, t->col);
  if (const auto& a = r.prompt_alt_tokens) {
    put_tensor(a->tokens, a->rows, a->k, msg.mutable_prompt_alt_tokens()->mutable_tokens());
    put_tensor(a->logprobs, a->rows, a->k, msg.mutable_prompt_alt_tokens()->mutable_logprobs());
  }
  return msg.SerializeAsString();
}

std::string forward_result_to_proto(const train::ForwardResult& r, const std::string& output_type,
                                    bool include_elementwise_loss) {
  tinker_public::ForwardBackwardOutput msg;
  msg.set_loss_fn_output_type(output_type);
  for (const auto& [k, v] : r.metrics) (*msg.mutable_metrics())[k] = v;
  // One ArrayRecord per run of datums whose targets share a trailing shape ([] or [K]).
  const auto& outs = r.loss_fn_outputs;
  for (size_t start = 0; start < outs.size();) {
    const std::vector<int64_t> trailing(outs[start].logprobs.shape.begin() + 1, outs[start].logprobs.shape.end());
    size_t end = start;
    while (end < outs.size() &&
           std::vector<int64_t>(outs[end].logprobs.shape.begin() + 1, outs[end].logprobs.shape.end()) == trailing)
      ++end;
    auto* rec = msg.add_loss_fn_outputs();
    rec->set_num_datums(static_cast<int64_t>(end - start));
    auto add_field = [&](const char* name, auto pick) {
      tinker_public::BatchedTensor bt;
      bt.set_dtype(tinker_public::DTYPE_FLOAT32);
      for (int64_t s : trailing) bt.add_trailing_shape(s);
      std::string data;
      std::vector<int64_t> offsets{0};
      for (size_t i = start; i < end; ++i) {
        data += pack_floats(pick(outs[i]).data);
        offsets.push_back(static_cast<int64_t>(data.size()));
      }
      bt.set_data(std::move(data));
      bt.set_offsets(std::string(reinterpret_cast<const char*>(offsets.data()), offsets.size() * sizeof(int64_t)));
      (*rec->mutable_fields())[name] = std::move(bt);
    };
    add_field("logprobs", [](const train::LossFnOutput& o) -> const train::TensorData& { return o.logprobs; });
    if (include_elementwise_loss)
      add_field("elementwise_loss", [](const train::LossFnOutput& o) -> const train::TensorData& { return o.elementwise_loss; });
    start = end;
  }
  // Deterministic serialization: map entries sorted by key, so the bytes are reproducible.
  std::string out;
  {
    google::protobuf::io::StringOutputStream sos(&out);
    google::protobuf::io::CodedOutputStream cos(&sos);
    cos.SetSerializationDeterministic(true);
    msg.SerializeToCodedStream(&cos);
  }
  return out;
}

}  // namespace kiln::wire
