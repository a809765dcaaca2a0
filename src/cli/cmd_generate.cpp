#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "cli/commands.h"
#include "core/error.h"
#include "model/transformer.h"
#include "tools/generate.h"
#include "tools/run_model.h"
#include "train/trainer.h"

namespace agpt::cli {

namespace {

std::vector<int32_t> parse_ids(const std::string& text) {
    std::vector<int32_t> ids;
    std::istringstream in(text);
    std::string item;
    while (in >> item) {
        try {
            std::size_t used = 0;
            const long v = std::stol(item, &used);
            if (used != item.size() || v < 0 || v > INT32_MAX) throw std::invalid_argument(item);
            ids.push_back(static_cast<int32_t>(v));
        } catch (const std::exception&) {
            fail("--prompt-ids: '{}' is not a token id", item);
        }
    }
    if (ids.empty()) fail("--prompt-ids: no ids given");
    return ids;
}

}  // namespace

void add_generate_command(CLI::App& app, Action& action) {
    struct Options {
        std::string run, prompt, prompt_ids, output = "text";
        int step = -1, max_new_tokens = 200, top_k = 0, context = 0, threads = 0;
        double temperature = 0.8;
        uint64_t seed = 0;
        bool logprobs = false, no_cache = false, stop_at_eos = false;
    };
    auto opt = std::make_shared<Options>();
    auto* sub = app.add_subcommand("generate", "Generate text from a run's checkpoint");
    sub->add_option("--run", opt->run, "Run folder")->required();
    sub->add_option("--step", opt->step, "Checkpoint step (default: the newest)");
    auto* p = sub->add_option("--prompt", opt->prompt, "Prompt text");
    auto* pi = sub->add_option("--prompt-ids", opt->prompt_ids, "Prompt as token ids: \"1 2 3\"");
    p->excludes(pi);
    sub->add_option("--max-new-tokens", opt->max_new_tokens, "Tokens to generate")
        ->check(CLI::NonNegativeNumber);
    sub->add_option("--temperature", opt->temperature, "Sampling temperature; 0: greedy")
        ->check(CLI::NonNegativeNumber);
    sub->add_option("--top-k", opt->top_k, "Sample among the k likeliest; 0: all")
        ->check(CLI::NonNegativeNumber);
    sub->add_option("--seed", opt->seed, "Sampling seed");
    sub->add_option("--output", opt->output, "text, or ids (prompt and generated ids, one line)")
        ->check(CLI::IsMember({"text", "ids"}));
    sub->add_flag("--logprobs", opt->logprobs,
                  "Then print 'id logprob' of each generated token, one per line");
    sub->add_option("--context", opt->context,
                    "Tokens attended (default: the run's training.seq_len)")
        ->check(CLI::PositiveNumber);
    sub->add_flag("--no-cache", opt->no_cache,
                  "Recompute the whole context for every token (reference path, O(N²))");
    sub->add_flag("--stop-at-eos", opt->stop_at_eos, "Stop after an end-of-sequence token");
    sub->add_option("--threads", opt->threads, "Threads (0: all cores)");
    sub->callback([opt, &action] {
        action = [opt] {
            set_thread_count(opt->threads);
            RunModel rm = load_run_model(opt->run, opt->step, 1, 1, [](const std::string& w) {
                std::fprintf(stderr, "agpt: warning: %s\n", w.c_str());
            });
            std::vector<int32_t> prompt;
            if (!opt->prompt_ids.empty()) {
                prompt = parse_ids(opt->prompt_ids);
            } else {
                prompt = rm.tokenizer.encode(opt->prompt);
                if (prompt.empty() && rm.tokenizer.bos_id())
                    prompt.push_back(*rm.tokenizer.bos_id());
                if (prompt.empty())
                    fail("generate: the prompt is empty and the tokenizer has no bos");
            }
            GenerateOptions g;
            g.max_new_tokens = opt->max_new_tokens;
            g.temperature = opt->temperature;
            g.top_k = opt->top_k;
            g.seed = opt->seed;
            g.context = opt->context > 0 ? opt->context : rm.config.training.seq_len;
            g.use_cache = !opt->no_cache;
            if (opt->stop_at_eos && rm.tokenizer.eos_id()) g.stop_id = *rm.tokenizer.eos_id();
            Transformer* model = rm.model.get();
            std::unique_ptr<Transformer> wide;
            if (opt->no_cache) {
                // The uncached path runs whole windows through the Transformer's arena.
                wide = std::make_unique<Transformer>(
                    rm.model->args(), 1, std::min(g.context, rm.model->args().max_seq_len));
                wide->params() = rm.model->params();
                model = wide.get();
            }
            const GenerateResult r = generate_tokens(*model, prompt, g);
            std::vector<int32_t> all = prompt;
            all.insert(all.end(), r.ids.begin(), r.ids.end());
            if (opt->output == "ids") {
                std::printf("%s\n", fmt::format("{}", fmt::join(all, " ")).c_str());
            } else {
                std::string text = opt->prompt_ids.empty()
                                       ? opt->prompt + rm.tokenizer.decode(r.ids)
                                       : rm.tokenizer.decode(all);
                std::printf("%s\n", text.c_str());
            }
            if (opt->logprobs)
                for (std::size_t i = 0; i < r.ids.size(); i++)
                    std::printf("%d %.8f\n", r.ids[i], r.logprobs[i]);
            return 0;
        };
    });
}

}  // namespace agpt::cli
