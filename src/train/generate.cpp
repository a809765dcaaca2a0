#include "train/generate.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/rng.h"

namespace agpt {

std::vector<int32_t> sample_tokens(LanguageModel& model, int max_seq,
                                   const std::vector<int32_t>& prompt, const SampleOptions& opt) {
    if (prompt.empty()) fail("generate: the prompt is empty");
    const int V = model.vocab_size();
    std::vector<int32_t> ctx = prompt, out;
    std::vector<float> logits(V);
    std::vector<double> prob(V);
    Rng rng(opt.seed);
    for (int i = 0; i < opt.max_new_tokens; i++) {
        const int T = std::min<int>(static_cast<int>(ctx.size()), max_seq);
        model.last_logits(ctx.data() + ctx.size() - T, T, logits.data());
        int32_t next = 0;
        if (opt.temperature <= 0.0) {
            next = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) -
                                        logits.begin());
        } else {
            double cutoff = -INFINITY;
            if (opt.top_k > 0 && opt.top_k < V) {
                std::vector<float> sorted(logits);
                std::nth_element(sorted.begin(), sorted.begin() + (opt.top_k - 1), sorted.end(),
                                 std::greater<>());
                cutoff = sorted[opt.top_k - 1];
            }
            const double maxv = *std::max_element(logits.begin(), logits.end());
            double sum = 0.0;
            for (int v = 0; v < V; v++) {
                prob[v] = logits[v] < cutoff ? 0.0 : std::exp((logits[v] - maxv) / opt.temperature);
                sum += prob[v];
            }
            double u = rng.uniform() * sum;
            next = V - 1;
            for (int v = 0; v < V; v++) {
                u -= prob[v];
                if (u < 0.0) {
                    next = v;
                    break;
                }
            }
        }
        ctx.push_back(next);
        out.push_back(next);
    }
    return out;
}

}  // namespace agpt
