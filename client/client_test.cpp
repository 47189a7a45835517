// The client against a real emulator: in process, and over loopback HTTP with faults injected
// through the control API, so each retry branch is taken and survived without duplicate effects.
#include "http/test_fixture.hpp"  // first: Eigen before httplib.h (see http/routes.hpp)

#include <cmath>

#include "client/errors.hpp"
#include "client/in_process_transport.hpp"
#include "client/service_client.hpp"

namespace kiln::client {
namespace {

using http::testing::HttpTest;

ClientOptions quick_options() {
  ClientOptions o;
  o.retry.initial_delay_seconds = 0.01;
  o.retry.max_delay_seconds = 0.05;
  o.retry.budget_seconds = 5;
  o.retry.billing_pause_seconds = 0.05;
  o.heartbeat_seconds = 0;
  return o;
}

std::vector<Datum> sentences(std::initializer_list<const char*> texts) {
  std::vector<Datum> out;
  for (const char* t : texts) {
    const std::string s = t;
    Datum d;
    d.model_input.assign(s.begin(), s.end() - 1);
    d.loss_fn_inputs["target_tokens"] = TensorData::ints({s.begin() + 1, s.end()});
    out.push_back(std::move(d));
  }
  return out;
}

class ClientTest : public HttpTest {
 protected:
  ServiceClient http_client(ClientOptions o = quick_options()) { return ServiceClient(server->base_url(), "tml-test", o); }
  ServiceClient local_client(ClientOptions o = quick_options()) {
    return ServiceClient(in_process_transport(*server), "tml-test", o);
  }
  void faults(const json& rules) { ASSERT_EQ(post("/_kiln/faults", {{"seed", 1}, {"rules", rules}}).first, 200); }
  json model_state(const std::string& id) {
    const json state = get("/_kiln/state").second;  // named: the loop must not outlive it
    for (const auto& m : state["models"])
      if (m["model_id"] == id) return m;
    return json();
  }
  std::vector<json> journal(const std::string& path_suffix) {
    std::vector<json> out;
    const json all = get("/_kiln/journal").second;
    for (const auto& e : all["entries"]) {
      const std::string p = e["path"];
      if (p.size() >= path_suffix.size() && p.compare(p.size() - path_suffix.size(), path_suffix.size(), path_suffix) == 0)
        out.push_back(e);
    }
    return out;
  }
};

TEST_F(ClientTest, TrainsInProcessWithSeqIdsInOrder) {
  auto service = local_client();
  auto tc = service.create_lora_training_client("kiln/tiny", {.rank = 8, .seed = 3});
  EXPECT_EQ(tc.model_id(), service.session_id() + ":train:0");
  const auto data = sentences({"hello kiln", "a second line"});
  double first = 0, last = 0;
  for (int i = 0; i < 5; ++i) {
    auto fb = tc.forward_backward(data, "cross_entropy");
    auto step = tc.optim_step({.learning_rate = 0.05}, GradAccNormalization::num_loss_tokens);
    const auto out = fb.result();
    step.result();
    EXPECT_EQ(out.metrics.at("response_tokens"), 9 + 12);
    EXPECT_EQ(out.loss_fn_outputs.size(), 2u);
    (i == 0 ? first : last) = out.metrics.at("loss:sum");
  }
  EXPECT_LT(last, first);
  EXPECT_EQ(model_state(tc.model_id())["optimizer_step"], 5);
  std::vector<int64_t> seqs;
  for (const auto& e : journal("/forward_backward")) seqs.push_back(e["request"]["seq_id"]);
  for (const auto& e : journal("/optim_step")) seqs.push_back(e["request"]["seq_id"]);
  std::sort(seqs.begin(), seqs.end());
  EXPECT_EQ(seqs, (std::vector<int64_t>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}));
  const auto info = tc.get_info();
  EXPECT_TRUE(info.is_lora);
  EXPECT_EQ(info.lora_rank, 8);
}

// An https:// base URL: the client verifies the server's certificate against the trust store,
// which SSL_CERT_FILE points at (as for the Python SDKs).
class TlsClientTest : public http::testing::TlsHttpTest {};

TEST_F(TlsClientTest, TrainsOverHttpsTrustingTheCertificateFromSslCertFile) {
  ASSERT_EQ(server->base_url().rfind("https://", 0), 0u);
  ::setenv("SSL_CERT_FILE", tls.cert.c_str(), 1);
  ServiceClient service(server->base_url(), "tml-test", quick_options());
  auto tc = service.create_lora_training_client("kiln/tiny", {.rank = 4, .seed = 3});
  const auto out = tc.forward_backward(sentences({"over tls"}), "cross_entropy").result();
  EXPECT_TRUE(std::isfinite(out.metrics.at("loss:sum")));
  tc.optim_step({.learning_rate = 0.01}).result();
  ::unsetenv("SSL_CERT_FILE");
}

TEST_F(ClientTest, ChunksGoOutInParallelAndMergeToTheWholeResult) {
  auto o = quick_options();
  o.max_chunk_datums = 2;
  auto chunked = local_client(o);
  auto whole = ServiceClient(in_process_transport(*server), "tml-test", quick_options());
  auto a = chunked.create_lora_training_client("kiln/tiny", {.rank = 4, .seed = 9});
  auto b = whole.create_lora_training_client("kiln/tiny", {.rank = 4, .seed = 9});
  const auto data = sentences({"one", "two two", "three three", "four", "five five five"});
  const auto split = a.forward(data).result();
  const auto single = b.forward(data).result();
  ASSERT_EQ(split.loss_fn_outputs.size(), 5u);
  // Equal up to float rounding: a datum's numbers may round differently in a smaller batch.
  EXPECT_NEAR(split.metrics.at("loss:sum"), single.metrics.at("loss:sum"), 1e-4);
  for (size_t i = 0; i < 5; ++i) {
    const auto& x = split.loss_fn_outputs[i].at("logprobs").data;
    const auto& y = single.loss_fn_outputs[i].at("logprobs").data;
    ASSERT_EQ(x.size(), y.size());
    for (size_t t = 0; t < x.size(); ++t) EXPECT_NEAR(x[t], y[t], 1e-5);
  }
  std::vector<int64_t> arrival;
  for (const auto& e : journal("/forward"))
    if (e["request"]["model_id"] == a.model_id()) arrival.push_back(e["request"]["seq_id"]);
  ASSERT_EQ(arrival.size(), 3u);
  EXPECT_EQ(arrival.back(), 1);  // chunk 1 goes last
  EXPECT_THROW(a.forward({}), ClientError);
}

TEST_F(ClientTest, LostResponsesAndRetriesHaveNoDuplicateEffects) {
  auto service = http_client();
  auto tc = service.create_lora_training_client("kiln/tiny", {.rank = 4});
  faults({{{"endpoint", "/api/v1/forward_backward"}, {"action", {{"kind", "status"}, {"status", 503}}}},
          {{"endpoint", "/api/v1/optim_step"}, {"action", {{"kind", "close"}}}},
          {{"endpoint", "retrieve_future"}, {"times", 2}, {"action", {{"kind", "try_again"}, {"queue_state", "paused_capacity"}}}},
          // Rules are tried in order and each stops once spent, so polls meet these one after another.
          {{"endpoint", "retrieve_future"}, {"times", 1}, {"action", {{"kind", "close"}}}},
          {{"endpoint", "retrieve_future"}, {"times", 1}, {"action", {{"kind", "status"}, {"status", 429}}}},
          {{"endpoint", "retrieve_future"}, {"times", 2}, {"action", {{"kind", "status"}, {"status", 500}}}},
          {{"endpoint", "/api/v1/save_weights"}, {"action", {{"kind", "status"}, {"status", 402}}}},
          {{"endpoint", "/api/v1/get_info"}, {"action", {{"kind", "status"}, {"status", 429}}}},
          {{"endpoint", "/api/v1/get_info"}, {"action", {{"kind", "status"}, {"status", 409}}}},
          {{"endpoint", "/api/v1/get_info"}, {"action", {{"kind", "status"}, {"status", 400}, {"body", ""}}}}});
  const auto out = tc.forward_backward(sentences({"retry me"}), "cross_entropy").result();
  EXPECT_GT(out.metrics.at("loss:sum"), 0);
  // The optim_step ran, but its answer was lost mid-body: the client re-sent the same seq_id,
  // the server recognised the resubmission, and the step happened once.
  tc.optim_step({.learning_rate = 0.01}).result();
  EXPECT_EQ(model_state(tc.model_id())["optimizer_step"], 1);
  EXPECT_EQ(journal("/optim_step").size(), 2u);
  EXPECT_FALSE(tc.save_state("after-402").result().path.empty());  // a billing pause, then success
  EXPECT_EQ(tc.get_info().lora_rank, 4);  // 429, 409 and an empty-bodied 400 are retried
  const json rules = get("/_kiln/faults").second;
  for (const auto& rule : rules["rules"]) EXPECT_GE(rule["fired"].get<int>(), 1) << rule;
}

TEST_F(ClientTest, PollFailuresSurfaceWithTheSdkTexts) {
  auto service = http_client();
  auto tc = service.create_lora_training_client("kiln/tiny", {.rank = 4});
  faults({{{"request_type", "optim_step"}, {"action", {{"kind", "fail_future"}, {"category", "user"}, {"message", "nope"}}}}});
  try {
    tc.optim_step({}).result();
    ADD_FAILURE() << "no error";
  } catch (const RequestFailedError& e) {
    EXPECT_EQ(e.category(), "user");
    EXPECT_EQ(std::string(e.what()).rfind("Request failed: nope for request_id='", 0), 0u) << e.what();
  }
  faults({{{"endpoint", "retrieve_future"}, {"times", 4}, {"action", {{"kind", "status"}, {"status", 400}, {"body", {{"detail", "bad"}}}}}}});
  try {
    tc.forward(sentences({"abc"})).result();
    ADD_FAILURE() << "no error";
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status(), 400);
    EXPECT_NE(std::string(e.what()).find("exceeded 3 retries"), std::string::npos) << e.what();
  }
  faults({{{"endpoint", "retrieve_future"}, {"times", 3}, {"action", {{"kind", "status"}, {"status", 400}, {"body", {{"detail", "bad"}}}}}}});
  EXPECT_EQ(tc.forward(sentences({"abc"})).result().loss_fn_outputs.size(), 1u);  // 3 are re-polled
  faults({{{"endpoint", "retrieve_future"}, {"action", {{"kind", "status"}, {"status", 410}}}}});
  EXPECT_THROW(tc.forward(sentences({"abc"})).result(), PromiseExpiredError);
  faults({{{"endpoint", "/api/v1/forward"}, {"action", {{"kind", "status"}, {"status", 404}}}}});
  EXPECT_THROW(tc.forward(sentences({"abc"})), ApiError);  // other 4xx are fatal at once
  faults({{{"endpoint", "/api/v1/forward"}, {"probability", 1.0}, {"action", {{"kind", "status"}, {"status", 503}}}}});
  EXPECT_THROW(tc.forward(sentences({"abc"})), ApiError);  // 5xx past the retry budget
}

TEST_F(ClientTest, ServiceLevelRulesAndCheckpointFlows) {
  auto service = local_client();
  auto tc = service.create_training_client("kiln/tiny", 4);
  try {
    service.create_training_client("kiln/tiny", 4);
    ADD_FAILURE() << "no error";
  } catch (const ClientError& e) {
    EXPECT_EQ(std::string(e.what()), "A training client for 'kiln/tiny' (lora_rank=4) already exists on this service. "
                                     "Create a new FiretitanServiceClient for a separate trainer.");
  }
  EXPECT_NO_THROW(service.create_training_client("kiln/tiny", 8));  // another rank is fine
  const auto data = sentences({"checkpoint me"});
  tc.forward_backward(data, "cross_entropy");
  tc.optim_step({.learning_rate = 0.05}).result();
  const std::string path = tc.save_state("c1").result().path;
  EXPECT_EQ(path, "tinker://" + tc.model_id() + "/weights/c1");
  EXPECT_EQ(tc.list_checkpoints(), std::vector<std::string>{"c1"});
  auto restored = service.create_training_client_from_state_with_optimizer(path);
  EXPECT_EQ(restored.forward(data).result().loss_fn_outputs[0].at("logprobs").data,
            tc.forward(data).result().loss_fn_outputs[0].at("logprobs").data);
  const auto sampler = tc.save_weights_for_sampler_ext("s", "base");
  EXPECT_EQ(sampler.snapshot_name, "s-" + tc.sampler_suffix());
  EXPECT_EQ(tc.sampler_suffix().size(), 8u);
  EXPECT_EQ(sampler.path, "tinker://" + tc.model_id() + "/sampler_weights/" + sampler.snapshot_name);
  EXPECT_THROW(tc.save_weights_for_sampler_ext("s", "diff"), ClientError);
  EXPECT_EQ(TrainingClient::resolve_checkpoint_path("step-2", " job-1 "), "cross_job://job-1/step-2");
  EXPECT_EQ(TrainingClient::resolve_checkpoint_path("gs://b/x"), "gs://b/x");
  EXPECT_EQ(TrainingClient::resolve_checkpoint_path("step-2"), "step-2");
  EXPECT_THROW(TrainingClient::resolve_checkpoint_path("step-2", " "), ClientError);
  EXPECT_EQ(TrainingClient::resolve_checkpoint_path("/abs/x", "job"), "/abs/x");  // a full path wins, job or not
  EXPECT_THROW(TrainingClient::resolve_checkpoint_path(" gs://b/x", "job"), ClientError);  // full once stripped
  EXPECT_THROW(ServiceClient(in_process_transport(*server), "", quick_options()), ClientError);
}

TEST_F(ClientTest, CustomLossMatchesTheBuiltInLossItLinearises) {
  // -Σ logprob through forward_backward_custom must train exactly like cross_entropy.
  auto s1 = local_client(), s2 = local_client();
  auto custom = s1.create_lora_training_client("kiln/tiny", {.rank = 4, .seed = 5});
  auto builtin = s2.create_lora_training_client("kiln/tiny", {.rank = 4, .seed = 5});
  const auto data = sentences({"linearise this", "and this one"});
  const auto out = custom.forward_backward_custom(data, [](const std::vector<Datum>&, const std::vector<std::vector<double>>& lp) {
    CustomLossOutput o;
    for (const auto& v : lp) {
      o.grads.emplace_back(v.size(), -1.0);
      for (double x : v) o.loss -= x;
    }
    o.metrics["custom_loss"] = o.loss;
    return o;
  }).result();
  EXPECT_GT(out.metrics.at("custom_loss"), 0);
  EXPECT_NEAR(out.metrics.at("loss:sum"), out.metrics.at("custom_loss"), 1e-3);
  builtin.forward_backward(data, "cross_entropy");
  custom.optim_step({.learning_rate = 0.05}).result();
  builtin.optim_step({.learning_rate = 0.05}).result();
  const auto a = custom.forward(data).result().metrics.at("loss:sum");
  const auto b = builtin.forward(data).result().metrics.at("loss:sum");
  EXPECT_NEAR(a, b, 1e-5);
}

TEST_F(ClientTest, ProtobufTransportGivesTheSameResultsAsJson) {
  auto o = quick_options();
  o.wire_format = "protobuf";
  o.max_chunk_datums = 2;
  auto proto = http_client(o);
  auto plain = local_client();
  auto a = proto.create_lora_training_client("kiln/tiny", {.rank = 4, .seed = 11});
  auto b = plain.create_lora_training_client("kiln/tiny", {.rank = 4, .seed = 11});
  const auto data = sentences({"over protobuf", "and zstd", "three datums"});
  const auto pa = a.forward_backward(data, "cross_entropy").result();
  const auto pb = b.forward_backward(data, "cross_entropy").result();
  ASSERT_EQ(pa.loss_fn_outputs.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    const auto& x = pa.loss_fn_outputs[i].at("logprobs").data;
    const auto& y = pb.loss_fn_outputs[i].at("logprobs").data;
    ASSERT_EQ(x.size(), y.size());
    for (size_t t = 0; t < x.size(); ++t) EXPECT_NEAR(x[t], y[t], 1e-5);  // chunked: rounding may differ
    EXPECT_EQ(pa.loss_fn_outputs[i].at("logprobs").shape, pb.loss_fn_outputs[i].at("logprobs").shape);
  }
  EXPECT_NEAR(pa.metrics.at("loss:sum"), pb.metrics.at("loss:sum"), 1e-4);
  EXPECT_EQ(pa.metrics.at("response_tokens"), pb.metrics.at("response_tokens"));
  a.optim_step({.learning_rate = 0.05}).result();
  b.optim_step({.learning_rate = 0.05}).result();
  // Chunked accumulation adds the gradients in another order: equal up to rounding.
  EXPECT_NEAR(a.forward(data).result().metrics.at("loss:sum"), b.forward(data).result().metrics.at("loss:sum"), 1e-4);
  size_t protobuf_submits = 0;
  for (const auto& e : journal("/forward_backward"))
    if (e["request"].value("transport", "") == "protobuf") {
      EXPECT_TRUE(e["request"]["zstd"].get<bool>());
      ++protobuf_submits;
    }
  EXPECT_EQ(protobuf_submits, 4u);  // 2 chunks of forward_backward, 2 of forward (forward_only)
}

TEST_F(ClientTest, HeartbeatsKeepTheSessionAlive) {
  auto o = quick_options();
  o.heartbeat_seconds = 0.05;
  auto service = local_client(o);
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  EXPECT_GE(service.connection().heartbeats(), 2);
  EXPECT_GE(journal("/session_heartbeat").size(), 2u);
}

}  // namespace
}  // namespace kiln::client

namespace kiln::client {
namespace {

// A sampler on saved weights serves those weights: its compute_logprobs equals the trainer's
// forward, a greedy sample is the trained weights' argmax continuation, and every sequence
// carries the promise's sequence id.
TEST_F(ClientTest, SamplesTheSavedWeightsAndAgreesWithTheTrainer) {
  auto service = http_client();
  auto tc = service.create_lora_training_client("kiln/tiny", {.rank = 8, .seed = 5});
  const auto data = sentences({"sampling the trained weights"});
  for (int i = 0; i < 3; ++i) {
    tc.forward_backward(data, "cross_entropy").result();
    tc.optim_step({.learning_rate = 0.05}).result();
  }
  const auto forward = tc.forward(data).result();
  const std::string path = tc.save_weights_for_sampler("trained").result().path;
  auto sampler = service.create_sampling_client(path);
  EXPECT_EQ(sampler.sampling_session_id(), service.session_id() + ":sample:0");

  std::vector<int64_t> prompt = data[0].model_input;
  prompt.push_back(static_cast<int64_t>(data[0].loss_fn_inputs.at("target_tokens").data.back()));
  const auto lp = sampler.compute_logprobs(prompt).result();
  ASSERT_EQ(lp.size(), prompt.size());
  EXPECT_FALSE(lp[0].has_value());
  const auto& want = forward.loss_fn_outputs[0].at("logprobs").data;  // logprob of token t+1 given ..t
  for (size_t t = 1; t < prompt.size(); ++t) {
    ASSERT_TRUE(lp[t].has_value()) << t;
    EXPECT_NEAR(*lp[t], want[t - 1], 1e-4) << "position " << t;
  }

  SamplingParams greedy;
  greedy.max_tokens = 5;
  greedy.temperature = 0;
  greedy.stop_tokens = {};
  const auto out = sampler.sample({'s', 'a'}, 2, greedy).result();
  ASSERT_EQ(out.sequences.size(), 2u);
  EXPECT_EQ(out.sequences[0].tokens, out.sequences[1].tokens);  // greedy: both the argmax path
  EXPECT_EQ(out.sequences[0].tokens.size(), out.sequences[0].logprobs.size());
  EXPECT_FALSE(out.sequences[0].sequence_id.empty());
  EXPECT_NE(out.sequences[0].sequence_id, out.sequences[1].sequence_id);

  // The base model's sampler differs from the trained one on the trained text.
  auto base = service.create_sampling_client("", "kiln/tiny");
  EXPECT_EQ(base.sampling_session_id(), service.session_id() + ":sample:1");
  const auto base_lp = base.compute_logprobs(prompt).result();
  double diff = 0;
  for (size_t t = 1; t < prompt.size(); ++t) diff += std::abs(*base_lp[t] - *lp[t]);
  EXPECT_GT(diff, 0.1);

  EXPECT_THROW(service.create_sampling_client("s3://bucket/x"), ClientError);
  // The REST delete: the sampler's checkpoint goes (a second delete is a 404); a malformed path
  // is refused before anything is sent.
  service.delete_checkpoint(path);
  EXPECT_THROW(service.delete_checkpoint(path), ApiError);
  EXPECT_THROW(service.delete_checkpoint("tinker://run-only"), ClientError);
  EXPECT_THROW(sampler.sample({}, 1, greedy), ClientError);
}

}  // namespace
}  // namespace kiln::client
