// The batched decode step against the prefill path, and its independence from the batch: a
// sequence's numbers are the same alone, in any batch, at any position and thread count.
#include "model/decode_batch.hpp"

#include <cstring>

#include <gtest/gtest.h>

#include "model/errors.hpp"
#include "model/init.hpp"
#include "model/rng.hpp"
#include "model/sampler.hpp"
#include "model/test_util.hpp"
#include "model/threads.hpp"

namespace kiln::model {
namespace {

ModelConfig config(HeadKind head, int64_t vocab, int64_t d_model = 32, int64_t n_heads = 4) {
  ModelConfig c;
  c.vocab_size = vocab;
  c.d_model = d_model;
  c.n_layers = 2;
  c.n_heads = n_heads;
  c.d_ff = 72;  // not a multiple of 8 wide: the kernels' column tails are exercised
  c.max_context = 128;
  c.head = head;
  return c;
}

// A LoRA model with every adapter non-zero, so folding s·B·A into W is exercised.
Transformer<float> lora_model(const ModelConfig& c) {
  auto base = std::make_shared<const ParamSet<float>>(init_base_weights<float>(c, "decode-test", 3));
  Transformer<float> m(c, base, LoraConfig{.rank = 4, .seed = 5});
  SplitMix64 rng(9);
  testing::perturb(m.params(), rng, 0.2);
  return m;
}

std::vector<float> row(const HeadScores<float>& s, int64_t r) {
  std::vector<float> out;
  if (s.factored) {
    out.assign(s.hi.row(r).data(), s.hi.row(r).data() + s.hi.cols());
    out.insert(out.end(), s.lo.row(r).data(), s.lo.row(r).data() + s.lo.cols());
  } else {
    out.assign(s.logits.row(r).data(), s.logits.row(r).data() + s.logits.cols());
  }
  return out;
}

class DecodeStep : public ::testing::TestWithParam<HeadKind> {};

// Prefill of a prompt, then decode steps, give the head scores a longer prefill gives (1e-4), for
// head widths that take each of the attention kernel's paths (32, 16 and 8 lanes, and single ones).
TEST_P(DecodeStep, AgreesWithThePrefillPath) {
  for (const auto& [d, heads] : {std::pair<int64_t, int64_t>{32, 4}, {48, 4}, {64, 4}, {64, 2}, {112, 2}}) {
    const auto c = config(GetParam(), 300, d, heads);
    const auto m = lora_model(c);
    const DecodeWeights w(m);
    const std::vector<int64_t> tokens = {5, 77, 123, 9, 250, 31, 64};
    KvCache<float> cache;
    m.extend(cache, std::span(tokens).first(3));
    for (size_t t = 3; t < tokens.size(); ++t) {
      const DecodeSlot slot{&cache, tokens[t]};
      const auto got = row(decode_step(w, std::span(&slot, 1)), 0);
      KvCache<float> fresh;
      const auto hidden = m.extend(fresh, std::span(tokens).first(t + 1));
      const auto want = row(m.head_scores(hidden.bottomRows(1)), 0);
      ASSERT_EQ(got.size(), want.size());
      for (size_t i = 0; i < got.size(); ++i)
        ASSERT_NEAR(got[i], want[i], 1e-4) << "head dim " << d / heads << ", position " << t << " entry " << i;
    }
  }
}

// Long enough for every path of the scores (32, 8 and fewer positions at a time), with a prefill
// appended between decode steps (its keys reach the step's transposed copy): still the scores a
// whole prefill gives.
TEST_P(DecodeStep, LongContextsAndPrefillsBetweenStepsAgreeWithThePrefillPath) {
  const auto c = config(GetParam(), 300, 64, 4);
  const auto m = lora_model(c);
  const DecodeWeights w(m);
  SplitMix64 rng(4);
  std::vector<int64_t> tokens(60);
  for (auto& t : tokens) t = static_cast<int64_t>(rng.next() % 300);
  KvCache<float> cache;
  m.extend(cache, std::span(tokens).first(20));
  for (size_t t = 20; t < tokens.size(); ++t) {
    if (t >= 35 && t < 40) {  // five tokens by prefill, in the middle of the decoding
      m.extend(cache, std::span(tokens).subspan(t, 1));
      continue;
    }
    const DecodeSlot slot{&cache, tokens[t]};
    const auto got = row(decode_step(w, std::span(&slot, 1)), 0);
    KvCache<float> fresh;
    const auto want = row(m.head_scores(m.extend(fresh, std::span(tokens).first(t + 1)).bottomRows(1)), 0);
    for (size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], want[i], 1e-4) << "position " << t << " entry " << i;
  }
}

// The same sequence alone, second in a batch of five, and last in a batch of three at 2 threads:
// bitwise the same scores, step after step.
TEST_P(DecodeStep, ASequencesNumbersDoNotDependOnTheBatch) {
  const auto c = config(GetParam(), 300);
  const auto m = lora_model(c);
  const DecodeWeights w(m);
  auto prefilled = [&](std::vector<int64_t> prompt) {
    KvCache<float> k;
    m.extend(k, prompt);
    return k;
  };
  KvCache<float> alone = prefilled({1, 2, 3});
  std::vector<KvCache<float>> five = {prefilled({9}), prefilled({1, 2, 3}), prefilled({4, 4, 4, 4, 4}),
                                      prefilled({200, 100}), prefilled({7, 7})};
  std::vector<KvCache<float>> three = {prefilled({8, 9, 10, 11}), prefilled({12}), prefilled({1, 2, 3})};
  for (int step = 0; step < 4; ++step) {
    const int64_t tok = 40 + step;
    set_num_threads(1);
    const DecodeSlot one{&alone, tok};
    const auto a = row(decode_step(w, std::span(&one, 1)), 0);
    std::vector<DecodeSlot> s5;
    for (size_t i = 0; i < five.size(); ++i) s5.push_back({&five[i], i == 1 ? tok : 17});
    const auto b = row(decode_step(w, s5), 1);
    set_num_threads(2);
    std::vector<DecodeSlot> s3;
    for (size_t i = 0; i < three.size(); ++i) s3.push_back({&three[i], i == 2 ? tok : 23});
    const auto d = row(decode_step(w, s3), 2);
    set_num_threads(1);
    ASSERT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0) << "step " << step;
    ASSERT_EQ(std::memcmp(a.data(), d.data(), a.size() * sizeof(float)), 0) << "step " << step;
  }
}

// A step called where OpenMP grants fewer threads than asked (here: inside another parallel region,
// where a nested one gets one thread) still decodes every row, bitwise as at 1 thread.
TEST_P(DecodeStep, EveryRowIsDecodedWhenFewerThreadsAreGranted) {
  const auto c = config(GetParam(), 300);
  const auto m = lora_model(c);
  const DecodeWeights w(m);
  auto batch = [&](std::vector<KvCache<float>>& caches) {
    caches.resize(32);
    std::vector<DecodeSlot> slots;
    for (size_t i = 0; i < caches.size(); ++i) {
      m.extend(caches[i], std::vector<int64_t>{static_cast<int64_t>(i), 7});
      slots.push_back({&caches[i], static_cast<int64_t>(3 * i + 1)});
    }
    return slots;
  };
  std::vector<KvCache<float>> serial_caches, nested_caches;
  set_num_threads(1);
  const auto serial_slots = batch(serial_caches);
  const auto want = decode_step(w, serial_slots);
  const auto nested_slots = batch(nested_caches);
  set_num_threads(2);
  HeadScores<float> got;
#pragma omp parallel num_threads(2)
  {
#pragma omp single
    got = decode_step(w, nested_slots);
  }
  set_num_threads(1);
  for (int64_t r = 0; r < 32; ++r) {
    ASSERT_EQ(nested_caches[r].len, serial_caches[r].len) << "row " << r;
    const auto a = row(want, r), b = row(got, r);
    ASSERT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0) << "row " << r;
  }
}

// A 300-token prompt prefilled at 2 threads (its rows shared, in two chunks), and in two parts at
// 1 thread, gives bitwise the caches and the head scores at every position that decoding it one
// token at a time gives.
TEST_P(DecodeStep, APrefillHasTheNumbersOfDecodingTokenByToken) {
  auto c = config(GetParam(), 300, 64, 4);
  c.max_context = 400;
  const auto m = lora_model(c);
  const DecodeWeights w(m);
  SplitMix64 rng(6);
  std::vector<int64_t> prompt(300);
  for (auto& t : prompt) t = static_cast<int64_t>(rng.next() % 300);
  set_num_threads(1);
  KvCache<float> stepped;
  std::vector<std::vector<float>> want;
  for (const int64_t t : prompt) {
    const DecodeSlot slot{&stepped, t};
    want.push_back(row(decode_step(w, std::span(&slot, 1)), 0));
  }
  set_num_threads(2);
  KvCache<float> whole;
  const Mat<float> hidden = prefill(w, whole, prompt);
  set_num_threads(1);
  KvCache<float> parts;
  const Mat<float> first = prefill(w, parts, std::span(prompt).first(100));
  const Mat<float> rest = prefill(w, parts, std::span(prompt).subspan(100));
  ASSERT_EQ(hidden.rows(), 300);
  const HeadScores<float> z = head_scores(w, hidden), z1 = head_scores(w, first), z2 = head_scores(w, rest);
  for (int64_t t = 0; t < 300; ++t) {
    const auto a = row(z, t), b = t < 100 ? row(z1, t) : row(z2, t - 100);
    ASSERT_EQ(std::memcmp(a.data(), want[t].data(), a.size() * sizeof(float)), 0) << "position " << t;
    ASSERT_EQ(std::memcmp(b.data(), want[t].data(), b.size() * sizeof(float)), 0) << "position " << t;
  }
  for (const KvCache<float>* k : {&whole, &parts}) {
    ASSERT_EQ(k->len, 300);
    for (int l = 0; l < c.n_layers; ++l) {
      EXPECT_EQ(k->k[l].topRows(300), stepped.k[l].topRows(300)) << "layer " << l;
      EXPECT_EQ(k->v[l].topRows(300), stepped.v[l].topRows(300)) << "layer " << l;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Heads, DecodeStep, ::testing::Values(HeadKind::dense, HeadKind::factored),
                         [](const auto& info) { return info.param == HeadKind::dense ? "dense" : "factored"; });

// An empty prompt, one past the context or an id out of range: a clear error, and the cache as it
// was.
TEST(Prefill, RefusesBadTokensAndLeavesTheCacheAsItWas) {
  const auto c = config(HeadKind::factored, 300);
  const DecodeWeights w(lora_model(c));
  KvCache<float> cache;
  prefill(w, cache, std::vector<int64_t>{1, 2, 3});
  const KvCache<float> before = cache;
  auto refused = [&](const std::vector<int64_t>& tokens) {
    try {
      prefill(w, cache, tokens);
    } catch (const InputError& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  EXPECT_EQ(refused({}), "tokens: at least one token is required");
  EXPECT_EQ(refused(std::vector<int64_t>(126, 1)), "tokens: sequence length 129 exceeds the model's max_context 128");
  EXPECT_EQ(refused({4, 300}), "tokens[1]: token id 300 is out of range [0, 300)");
  EXPECT_EQ(refused({-1}), "tokens[0]: token id -1 is out of range [0, 300)");
  EXPECT_EQ(cache.len, 3);
  EXPECT_EQ(cache.k[0], before.k[0]);
  EXPECT_EQ(cache.kt[1], before.kt[1]);
}

// The kernel against a double-precision product, over row counts and widths with tails.
TEST(DecodeKernels, RowsTimesWtIsTheProduct) {
  SplitMix64 rng(1);
  for (int64_t rows : {1, 2, 3, 4, 5, 6, 7, 11, 13})  // every row-block size, alone and after full blocks
    for (int64_t out : {5, 8, 16, 70, 130}) {
      const int64_t in = 37;
      std::vector<float> x(static_cast<size_t>(rows * in)), wt(static_cast<size_t>(in * out)), y(static_cast<size_t>(rows * out));
      for (auto& v : x) v = static_cast<float>(rng.normal());
      for (auto& v : wt) v = static_cast<float>(rng.normal());
      rows_times_wt(x.data(), rows, in, wt.data(), in, out, y.data(), out);
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = 0; j < out; ++j) {
          double want = 0;
          for (int64_t k = 0; k < in; ++k) want += static_cast<double>(x[r * in + k]) * wt[k * out + j];
          ASSERT_NEAR(y[r * out + j], want, 1e-4) << rows << "x" << out << " at " << r << "," << j;
        }
    }
}

// Continuous batching: a request that joins a running batch, and one that leaves early, sample
// exactly (bitwise) what they sample alone.
TEST(BatchSampler, JoiningARunningBatchChangesNoResult) {
  const auto c = config(HeadKind::factored, 300);
  const auto m = std::make_shared<const Transformer<float>>(lora_model(c));
  SampleSpec a, b;
  a.prompt = {3, 4, 5};
  a.num_samples = 3;
  a.params.max_tokens = 12;
  a.params.seed = 11;
  b.prompt = {100, 101};
  b.num_samples = 2;
  b.params.max_tokens = 4;
  b.params.seed = 12;
  b.params.temperature = 0.7;
  b.params.top_k = 20;
  const SampleOutput alone_a = sample(*m, a), alone_b = sample(*m, b);

  BatchSampler batch(m);
  std::map<int64_t, SampleOutput> done;
  const int64_t ia = batch.add(a);
  for (int s = 0; s < 3; ++s)
    for (auto& [id, out] : batch.step()) done[id] = std::move(out);
  const int64_t ib = batch.add(b);  // joins between steps, with three sequences of `a` running
  while (!batch.idle())
    for (auto& [id, out] : batch.step()) done[id] = std::move(out);
  ASSERT_EQ(done.size(), 2u);
  for (auto [id, alone] : {std::pair{ia, &alone_a}, std::pair{ib, &alone_b}}) {
    const auto& got = done.at(id).sequences;
    ASSERT_EQ(got.size(), alone->sequences.size());
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_EQ(got[i].tokens, alone->sequences[i].tokens) << "request " << id << " sample " << i;
      EXPECT_EQ(got[i].logprobs, alone->sequences[i].logprobs) << "request " << id << " sample " << i;
    }
  }
}

// Eighteen sequences at 2 threads (the draws shared between threads, the decode step split by
// rows) sample exactly what they sample at 1 thread: tokens, logprobs and top-k logprobs.
TEST(BatchSampler, TheThreadCountChangesNoSample) {
  const auto c = config(HeadKind::factored, 300);
  const auto m = std::make_shared<const Transformer<float>>(lora_model(c));
  SampleSpec a, b;
  a.prompt = {7, 8, 9};
  a.num_samples = 12;
  a.params.max_tokens = 6;
  a.params.seed = 31;
  a.params.stop_tokens = {5, 17, 250};  // some sequences leave early
  a.topk_sample_logprobs = 3;
  b.prompt = {40};
  b.num_samples = 6;
  b.params.max_tokens = 5;
  b.params.seed = 32;
  b.params.temperature = 0.8;
  auto run = [&](int threads) {
    set_num_threads(threads);
    BatchSampler batch(m);
    std::map<int64_t, SampleOutput> done;
    batch.add(a);
    batch.add(b);
    while (!batch.idle())
      for (auto& [id, out] : batch.step()) done[id] = std::move(out);
    set_num_threads(1);
    return done;
  };
  const auto one = run(1), two = run(2);
  ASSERT_EQ(one.size(), 2u);
  ASSERT_EQ(two.size(), 2u);
  for (const auto& [id, out] : one) {
    const auto& got = two.at(id).sequences;
    ASSERT_EQ(got.size(), out.sequences.size());
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_EQ(got[i].tokens, out.sequences[i].tokens) << "request " << id << " sample " << i;
      EXPECT_EQ(got[i].logprobs, out.sequences[i].logprobs) << "request " << id << " sample " << i;
      EXPECT_EQ(got[i].topk_logprobs, out.sequences[i].topk_logprobs) << "request " << id << " sample " << i;
    }
  }
}

// Later requests decode in the caches earlier ones left (finished or cancelled, longer, with
// other numbers in them): still exactly the samples and prompt logprobs of a fresh sampler.
TEST(BatchSampler, ReusedCachesChangeNoResult) {
  const auto c = config(HeadKind::factored, 300);
  const auto m = std::make_shared<const Transformer<float>>(lora_model(c));
  SampleSpec longer, later;
  for (int64_t t = 0; t < 70; ++t) longer.prompt.push_back((t * 37) % 300);
  longer.num_samples = 4;
  longer.params.max_tokens = 40;  // the caches grow past their first 64 positions
  longer.params.seed = 1;
  later.prompt = {9, 8, 7, 6};
  later.num_samples = 3;
  later.params.max_tokens = 10;
  later.params.seed = 2;
  later.prompt_logprobs = true;
  const SampleOutput fresh = sample(*m, later);
  BatchSampler batch(m);
  auto finish = [&] {
    std::map<int64_t, SampleOutput> done;
    while (!batch.idle())
      for (auto& [id, out] : batch.step()) done[id] = std::move(out);
    return done;
  };
  batch.add(longer);
  finish();
  const int64_t cancelled = batch.add(longer);
  for (int s = 0; s < 5; ++s) batch.step();
  batch.remove(cancelled);
  for (int round = 0; round < 2; ++round) {
    const int64_t id = batch.add(later);
    const SampleOutput got = finish().at(id);
    ASSERT_EQ(got.sequences.size(), 3u);
    for (size_t i = 0; i < 3; ++i) {
      EXPECT_EQ(got.sequences[i].tokens, fresh.sequences[i].tokens) << "round " << round << " sample " << i;
      EXPECT_EQ(got.sequences[i].logprobs, fresh.sequences[i].logprobs) << "round " << round << " sample " << i;
    }
    ASSERT_EQ(got.prompt_logprobs->size(), 4u);
    EXPECT_EQ(std::memcmp(got.prompt_logprobs->data(), fresh.prompt_logprobs->data(), 4 * sizeof(float)), 0);
  }
}

// A cancelled request leaves the batch at once; the others sample exactly what they sample alone.
TEST(BatchSampler, RemovingARequestChangesNoOtherResult) {
  const auto c = config(HeadKind::dense, 300);
  const auto m = std::make_shared<const Transformer<float>>(lora_model(c));
  SampleSpec keep, drop;
  keep.prompt = {3, 4, 5};
  keep.num_samples = 2;
  keep.params.max_tokens = 10;
  keep.params.seed = 21;
  keep.params.end_of_sequence = false;
  drop = keep;
  drop.num_samples = 3;
  drop.params.seed = 22;
  const SampleOutput alone = sample(*m, keep);

  BatchSampler batch(m);
  const int64_t dropped = batch.add(drop), kept = batch.add(keep);
  for (int s = 0; s < 4; ++s) EXPECT_TRUE(batch.step().empty());
  EXPECT_EQ(batch.active(), 5u);
  batch.remove(dropped);
  EXPECT_EQ(batch.active(), 2u);
  batch.remove(dropped);  // again, or an unknown handle: nothing changes
  batch.remove(999);
  std::map<int64_t, SampleOutput> done;
  while (!batch.idle())
    for (auto& [id, out] : batch.step()) done[id] = std::move(out);
  ASSERT_EQ(done.size(), 1u);
  const auto& got = done.at(kept).sequences;
  ASSERT_EQ(got.size(), 2u);
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].tokens, alone.sequences[i].tokens) << "sample " << i;
    EXPECT_EQ(got[i].logprobs, alone.sequences[i].logprobs) << "sample " << i;
  }
}

}  // namespace
}  // namespace kiln::model
