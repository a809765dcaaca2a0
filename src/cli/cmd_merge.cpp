#include <string>
#include <vector>

#include "cli/commands.h"
#include "core/error.h"
#include "tools/merge.h"

namespace agpt::cli {

void add_merge_command(CLI::App& app, Action& action) {
    struct Options {
        std::string out, weights, decay;
        std::vector<std::string> checkpoints;
    };
    auto opt = std::make_shared<Options>();
    auto* sub = app.add_subcommand("merge", "Average checkpoints (weights or a WSM decay)");
    sub->add_option("--out", opt->out, "Output checkpoint folder")->required();
    sub->add_option("--weights", opt->weights, "Comma-separated weights summing to 1");
    sub->add_option("--decay", opt->decay, "WSM: emulate a decay (linear, cosine, 1-sqrt)");
    sub->add_option("checkpoints", opt->checkpoints, "Checkpoint step folders, oldest first")
        ->required();
    sub->callback([opt, &action] {
        action = [opt] {
            if (opt->weights.empty() == opt->decay.empty())
                fail("merge: give exactly one of --weights and --decay");
            std::vector<double> w;
            if (!opt->decay.empty()) {
                w = wsm_weights(opt->decay, static_cast<int>(opt->checkpoints.size()));
            } else {
                std::size_t pos = 0;
                const std::string& s = opt->weights;
                while (pos <= s.size()) {
                    const std::size_t comma = std::min(s.find(',', pos), s.size());
                    const std::string item = s.substr(pos, comma - pos);
                    try {
                        std::size_t used = 0;
                        w.push_back(std::stod(item, &used));
                        if (used != item.size()) throw std::invalid_argument(item);
                    } catch (const std::exception&) {
                        fail("--weights: '{}' is not a number", item);
                    }
                    pos = comma + 1;
                }
            }
            merge_checkpoints(opt->checkpoints, w, opt->out);
            return 0;
        };
    });
}

}  // namespace agpt::cli
