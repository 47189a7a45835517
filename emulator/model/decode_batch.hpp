#pragma once
// One decode step for a batch of sequences: each sequence feeds its next token, extends its own
// KV cache, and gets the head's scores for the token after. The projections of all sequences run
// as one matrix product, so a batch costs far less per token than its sequences one by one.
//
// Every kernel here computes a row from that row's inputs alone, in a fixed order (FMA chains over
// its inputs in index order), so a sequence's numbers do not depend on what else is in the batch,
// on its position in it, or on the thread count: a seeded request samples the same tokens alone
// or batched (continuous batching changes the company, never the result).
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "model/transformer.hpp"
#include "model/vocab.hpp"

namespace kiln::model {

// A frozen model laid out for decoding: LoRA adapters folded into their weights (W + s·B·A),
// every projection transposed to [in, out], q/k/v and gate/up fused, the head's rows likewise
// ([d, V] dense, or [d, A+m] factored). Built once per sampler (its weights never change).
struct DecodeWeights {
  struct Layer {
    std::vector<float> norm1, norm2;  // [d]
    std::vector<float> qkv_t;         // [d, 3d]
    std::vector<float> o_t;           // [d, d]
    std::vector<float> gate_up_t;     // [d, 2f]
    std::vector<float> down_t;        // [f, d]
  };
  ModelConfig config;
  FactoredVocab fv;
  std::vector<float> embed, embed_hi, embed_lo;  // as in the checkpoint (rows are ids / hi / lo)
  std::vector<Layer> layers;
  std::vector<float> final_norm;  // [d]
  std::vector<float> head_t;      // [d, V] or [d, A+m]
  int64_t head_width() const { return config.factored_head() ? fv.A + fv.m : config.vocab_size; }

  explicit DecodeWeights(const Transformer<float>& model);
};

// A sequence in a decode batch: its cache (filled by a prefill) and the token it feeds next.
struct DecodeSlot {
  KvCache<float>* cache = nullptr;
  int64_t token = 0;
};

// Feeds each slot's token at position cache->len, extends the caches, and returns the head's
// scores for the next token, one row per slot. Throws InputError when a cache is full.
HeadScores<float> decode_step(const DecodeWeights& w, std::span<const DecodeSlot> slots);
// The same into `out`, reusing its buffers: a sampler's steps then allocate nothing (a step's
// scores are ~100 KB at 32 sequences, and glibc would return them to the system and fault them
// back in at every step).
void decode_step(const DecodeWeights& w, std::span<const DecodeSlot> slots, HeadScores<float>& out);

// Runs one sequence's `tokens` (a prompt, or more of one) at positions cache.len.., extends the
// cache, and returns their final-normed hidden states [m, d]. Each position goes through the
// kernels of decode_step, so a prefilled prompt has bitwise the numbers of decoding it one token at
// a time. Long prefills share their rows among the threads. Throws InputError when the cache would
// exceed the context or an id is out of range.
Mat<float> prefill(const DecodeWeights& w, KvCache<float>& cache, std::span<const int64_t> tokens);

// The head's scores of hidden states [n, d] (from prefill), as decode_step computes them.
HeadScores<float> head_scores(const DecodeWeights& w, const Mat<float>& hidden);

// Y[r, :] = X[r, :] · Wt for `rows` rows (X row stride ldx, Y row stride ldy, Wt [in, out]):
// each output an FMA chain over k = 0..in-1, independent of `rows` and of the other rows.
void rows_times_wt(const float* x, int64_t rows, int64_t ldx, const float* wt, int64_t in, int64_t out, float* y,
                   int64_t ldy);

}  // namespace kiln::model
