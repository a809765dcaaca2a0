// agpt_gpt2_dump: what tests/torch_ref/gpt2_ref.py needs to check the Gpt2 model against an
// independent PyTorch GPT-2.
//
//   agpt_gpt2_dump model --flavor gpt2_tiny [--vocab V --dim C --layers L --heads H --context
//                  T_max] --batch B --seq T --seed S --perturb P --out dump.safetensors
//     initialises the model (scheme gpt2), adds N(0, P²) noise to every parameter (so that
//     biases and LayerNorm weights are not 0 and 1), and writes the weights, tokens, targets
//     (some -1), logits, the mean loss and every gradient of it.
//
//   agpt_gpt2_dump logits --model DIR --tokens tokens.safetensors --out logits.safetensors
//     loads a folder `agpt import --llmc` wrote and writes the logits of the "tokens" (B,T) I32
//     tensor of the input file.
#include <CLI/CLI.hpp>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/rng.h"
#include "core/safetensors.h"
#include "model/gpt2.h"
#include "tools/llmc_import.h"

namespace {

std::vector<int64_t> shape_of(const agpt::ParamView& v) {
    return std::vector<int64_t>(v.shape.begin(), v.shape.end());
}

struct ModelOptions {
    std::string flavor = "gpt2_tiny", out;
    int vocab = 0, dim = 0, layers = 0, heads = 0, context = 0, B = 2, T = 16;
    uint64_t seed = 1234;
    double perturb = 0.1;
};

int dump_model(const ModelOptions& o) {
    const agpt::Gpt2Flavor* f = agpt::find_gpt2_flavor(o.flavor);
    if (f == nullptr) agpt::fail("unknown gpt2 flavor '{}'", o.flavor);
    agpt::Gpt2Args args = f->args;
    if (o.vocab > 0) args.vocab_size = o.vocab;
    if (o.dim > 0) args.dim = o.dim;
    if (o.layers > 0) args.n_layers = o.layers;
    if (o.heads > 0) args.n_heads = o.heads;
    if (o.context > 0) args.max_seq_len = o.context;
    if (o.B < 1 || o.T < 1) agpt::fail("--batch and --seq must be positive");

    agpt::Gpt2 model(args, o.B, o.T);
    model.init_weights("gpt2", o.seed);
    agpt::Rng rng(o.seed + 1);
    for (float& p : model.params()) p += static_cast<float>(o.perturb * rng.normal());

    agpt::SafetensorsWriter w;
    w.set_metadata("flavor", o.flavor);
    w.set_metadata("dim", std::to_string(args.dim));
    w.set_metadata("n_layers", std::to_string(args.n_layers));
    w.set_metadata("n_heads", std::to_string(args.n_heads));
    w.set_metadata("vocab", std::to_string(args.vocab_size));
    w.set_metadata("padded_vocab", std::to_string(args.padded_vocab()));
    w.set_metadata("max_seq_len", std::to_string(args.max_seq_len));
    w.set_metadata("norm_eps", fmt::format("{:.17g}", args.norm_eps));
    for (const auto& v : model.param_views())
        w.add("param." + v.name, shape_of(v), model.params().data() + v.offset);

    const std::size_t BT = static_cast<std::size_t>(o.B) * o.T;
    std::vector<int32_t> tokens(BT), targets(BT);
    int counted = 0;
    for (std::size_t i = 0; i < BT; ++i) {
        tokens[i] = static_cast<int32_t>(rng.below(args.vocab_size));
        // Every 7th target is ignored (-1); the last vocabulary id appears as a target.
        targets[i] = i % 7 == 3 ? -1
                     : i == 0   ? args.vocab_size - 1
                                : static_cast<int32_t>(rng.below(args.vocab_size));
        counted += targets[i] >= 0;
    }
    w.add("tokens", {o.B, o.T}, tokens.data());
    w.add("targets", {o.B, o.T}, targets.data());

    std::vector<float> logits(BT * args.vocab_size);
    model.forward_logits(tokens.data(), o.B, o.T, logits.data());
    w.add("logits", {o.B, o.T, args.vocab_size}, logits.data());

    const double scale = 1.0 / counted;
    model.zero_grad();
    const double loss = model.forward_backward(tokens.data(), targets.data(), o.B, o.T, scale);
    const double mean_loss = loss * scale;
    const double loss_only = model.forward_loss(tokens.data(), targets.data(), o.B, o.T) * scale;
    w.add("loss", {1}, &mean_loss);
    w.add("forward_loss", {1}, &loss_only);
    for (const auto& v : model.param_views())
        w.add("grad." + v.name, shape_of(v), model.grads().data() + v.offset);

    // The last position's logits of the first sequence, through last_logits.
    std::vector<float> last(args.vocab_size);
    model.last_logits(tokens.data(), o.T, last.data());
    w.add("last_logits", {args.vocab_size}, last.data());
    w.write(o.out);
    std::printf("agpt_gpt2_dump: %s (%zu tensors), loss %.9f\n", o.out.c_str(), w.size(),
                mean_loss);
    return 0;
}

int dump_logits(const std::string& model_dir, const std::string& tokens_file,
                const std::string& out) {
    const agpt::SafetensorsFile in(tokens_file);
    const auto& t = in.tensor("tokens");
    if (t.shape.size() != 2) agpt::fail("{}: tokens must be (B,T)", tokens_file);
    const int B = static_cast<int>(t.shape[0]), T = static_cast<int>(t.shape[1]);
    const std::vector<int32_t> tokens = in.get<int32_t>("tokens");
    auto model = agpt::load_gpt2_model_folder(model_dir, B, T);
    const int V = model->args().vocab_size;
    std::vector<float> logits(static_cast<std::size_t>(B) * T * V);
    model->forward_logits(tokens.data(), B, T, logits.data());
    agpt::SafetensorsWriter w;
    w.add("logits", {B, T, V}, logits.data());
    w.write(out);
    std::printf("agpt_gpt2_dump: %s\n", out.c_str());
    return 0;
}

int run(int argc, char** argv) {
    CLI::App app{"Dump Gpt2 weights, logits, loss and gradients for the PyTorch reference"};
    app.require_subcommand(1);
    ModelOptions o;
    auto* m = app.add_subcommand("model", "Initialise, run forward and backward, dump");
    m->add_option("--flavor", o.flavor, "gpt2 flavor");
    m->add_option("--vocab", o.vocab, "vocabulary size overriding the flavor's");
    m->add_option("--dim", o.dim, "dim overriding the flavor's");
    m->add_option("--layers", o.layers, "layers overriding the flavor's");
    m->add_option("--heads", o.heads, "heads overriding the flavor's");
    m->add_option("--context", o.context, "max_seq_len (rows of wpe) overriding the flavor's");
    m->add_option("--batch", o.B, "batch size B");
    m->add_option("--seq", o.T, "sequence length T");
    m->add_option("--seed", o.seed, "init seed; noise and data use seed+1");
    m->add_option("--perturb", o.perturb, "std of the noise added to every parameter");
    m->add_option("--out", o.out, "output .safetensors file")->required();
    std::string model_dir, tokens_file, logits_out;
    auto* l = app.add_subcommand("logits", "Logits of an imported model folder");
    l->add_option("--model", model_dir, "folder written by agpt import --llmc")->required();
    l->add_option("--tokens", tokens_file, ".safetensors with a (B,T) I32 'tokens'")->required();
    l->add_option("--out", logits_out, "output .safetensors file")->required();
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    }
    if (m->parsed()) return dump_model(o);
    return dump_logits(model_dir, tokens_file, logits_out);
}

}  // namespace

int main(int argc, char** argv) {
    try {
        return run(argc, argv);
    } catch (const agpt::Error& e) {
        std::fprintf(stderr, "agpt_gpt2_dump: %s\n", e.what());
        return 1;
    }
}
