#include <cstdio>
#include <string>

#include "cli/commands.h"
#include "model/transformer.h"
#include "tools/hf_export.h"
#include "tools/llmc_import.h"

namespace agpt::cli {

void add_import_command(CLI::App& app, Action& action) {
    struct Options {
        std::string hf, llmc, out;
    };
    auto opt = std::make_shared<Options>();
    auto* sub = app.add_subcommand(
        "import",
        "Convert a Hugging Face Llama folder or an llm.c GPT-2 checkpoint into an agpt "
        "checkpoint to train from");
    auto* hf = sub->add_option("--hf", opt->hf, "Folder with config.json and model.safetensors");
    auto* llmc = sub->add_option("--llmc", opt->llmc,
                                 "llm.c GPT-2 checkpoint (fp32, version 3: gpt2_124M.bin, ...)");
    hf->excludes(llmc);
    sub->add_option("--out", opt->out, "Output checkpoint step folder (must not exist)")
        ->required();
    sub->callback([opt, &action, hf, llmc] {
        if (hf->count() == 0 && llmc->count() == 0) throw CLI::RequiredError("--hf or --llmc");
        action = [opt] {
            if (!opt->llmc.empty()) {
                const LlmcImportResult r = import_llmc(opt->llmc, opt->out);
                const Gpt2Args& a = r.args;
                std::printf(
                    "imported %s to %s: gpt2, dim %d, layers %d, heads %d, vocab %d (padded "
                    "%d), context %d, %ld parameters\n",
                    opt->llmc.c_str(), opt->out.c_str(), a.dim, a.n_layers, a.n_heads, a.vocab_size,
                    a.padded_vocab(), a.max_seq_len, r.params);
                if (r.flavor.empty())
                    std::printf("no gpt2 flavor has these shapes\n");
                else
                    std::printf(
                        "train from it: agpt train --model.name gpt2 --model.flavor %s "
                        "--checkpoint.initial_load_path %s\n",
                        r.flavor.c_str(), opt->out.c_str());
                return 0;
            }
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
