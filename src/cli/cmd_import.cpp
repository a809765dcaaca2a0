#include <cstdio>
#include <string>

#include "cli/commands.h"
#include "tools/hf_export.h"

namespace agpt::cli {

void add_import_command(CLI::App& app, Action& action) {
    struct Options {
        std::string hf, out;
    };
    auto opt = std::make_shared<Options>();
    auto* sub = app.add_subcommand(
        "import", "Convert a Hugging Face Llama folder into an agpt checkpoint to train from");
    sub->add_option("--hf", opt->hf, "Folder with config.json and model.safetensors")->required();
    sub->add_option("--out", opt->out, "Output checkpoint step folder (must not exist)")
        ->required();
    sub->callback([opt, &action] {
        action = [opt] {
            const HfImportResult r = import_hf(opt->hf, opt->out);
            const ModelArgs& a = r.args;
            std::printf(
                "imported %s to %s: dim %d, layers %d, heads %d/%d, ffn %d, vocab %d, rope_theta "
                "%g\n",
                opt->hf.c_str(), opt->out.c_str(), a.dim, a.n_layers, a.n_heads, a.n_kv_heads,
                a.ffn_hidden(), a.vocab_size, a.rope_theta);
            if (r.flavor.empty()) {
                std::printf(
                    "no built-in flavor has these shapes; train from it with a flavor "
                    "that does and --checkpoint.initial_load_path %s\n",
                    opt->out.c_str());
                return 0;
            }
            std::printf(
                "train from it: agpt train --model.flavor %s%s%s "
                "--checkpoint.initial_load_path %s\n",
                r.flavor.c_str(), r.tokenizer.empty() ? "" : " --model.tokenizer ",
                r.tokenizer.c_str(), opt->out.c_str());
            return 0;
        };
    });
}

}  // namespace agpt::cli
