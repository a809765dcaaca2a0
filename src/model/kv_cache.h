#pragma once
// Incremental inference over a Transformer's parameters with a key/value cache.
//
// Transformer::last_logits recomputes every position of the window for each new token, so
// generating N tokens costs O(N) full forwards (O(N²) token-layer steps). A KvCache keeps each
// layer's rotated keys and values of the tokens it has seen; appending a token runs the layers
// on that one row and attends it to the cache (kernels/cpu/attention_decode.h). The arithmetic
// is the Transformer's, on the same kernels; only the attention's summation order and the
// GEMMs' shapes differ, so logits agree to float rounding (tests/kv_cache_test.cpp). Every
// architecture switch (QK-norm, soft-caps, ReLU²) takes the same path as in the Transformer.
//
// Intended use:
//   KvCache cache(model, capacity);                 // model must outlive the cache
//   std::vector<float> logits(model.args().vocab_size);
//   cache.append(prompt.data(), prompt.size(), logits.data());   // prefill
//   for (...) { int32_t next = pick(logits); cache.append(&next, 1, logits.data()); }
//   cache.clear();                                  // start another sequence
#include <cstdint>
#include <vector>

#include "model/transformer.h"

namespace agpt {

class KvCache {
  public:
    // Room for `capacity` positions (> 0, at most the model's max_seq_len).
    KvCache(Transformer& model, int capacity);

    int capacity() const { return capacity_; }
    int length() const { return length_; }  // positions held
    void clear() { length_ = 0; }

    // Runs n >= 1 tokens at positions length() .. length()+n-1, adds their keys and values to
    // the cache and writes the logits (vocab_size) of the last of them into `logits`. Throws
    // Error when the cache would overflow or an id is outside the vocabulary.
    void append(const int32_t* tokens, int n, float* logits);

  private:
    Transformer* model_;
    int capacity_;
    int length_ = 0;
    std::vector<float> k_, v_;  // per layer (capacity, KV·hd), layer-major
    std::vector<float> rope_cos_, rope_sin_;
    // Per-chunk scratch, kChunk rows each.
    std::vector<float> x_, xn_, rstd_, qkv_, qk_rstd_, attn_, h13_, gate_;
    void run_chunk(const int32_t* tokens, int n);
};

}  // namespace agpt
