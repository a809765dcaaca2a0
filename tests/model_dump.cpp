// agpt_model_dump: runs the agpt model once forward and backward, then a few AdamW steps, and
// writes everything an independent implementation needs to check it (weights, inputs, logits,
// loss, gradients, per-step losses) into one safetensors file. tests/torch_ref reads that file
// into a PyTorch twin written from design.md and compares.
#include <CLI/CLI.hpp>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/rng.h"
#include "core/safetensors.h"
#include "model/model_args.h"
#include "model/transformer.h"
#include "optim/adamw.h"
#include "optim/grad_clip.h"

namespace {

std::vector<int64_t> shape_of(const agpt::ParamView& v) {
    return std::vector<int64_t>(v.shape.begin(), v.shape.end());
}

void random_tokens(agpt::Rng& rng, int V, std::size_t n, int32_t* out) {
    for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<int32_t>(rng.below(V));
}

int run(int argc, char** argv) {
    std::string flavor = "tiny", out;
    agpt::ModelSwitches switches;
    int vocab = 300, B = 2, T = 16, steps = 5;
    uint64_t seed = 1234;
    double lr = 1e-3, norm_noise = 0.0, expert_bias_noise = 0.0;
    CLI::App app{"Dump agpt model weights, logits, loss, gradients and AdamW losses"};
    app.add_option("--flavor", flavor, "model flavor (model_args.h), suffixes included");
    app.add_flag("--qk-norm", switches.qk_norm, "as model.qk_norm");
    app.add_option("--attn-softcap", switches.attn_softcap, "as model.attn_softcap");
    app.add_option("--final-softcap", switches.final_softcap, "as model.final_softcap");
    app.add_option("--ffn", switches.ffn, "as model.ffn: swiglu | relu2");
    app.add_option("--aux-loss-alpha", switches.aux_loss_alpha, "as model.aux_loss_alpha (MoE)");
    app.add_option("--vocab", vocab, "vocabulary size overriding the flavor's");
    app.add_option("--batch", B, "batch size B");
    app.add_option("--seq", T, "sequence length T");
    app.add_option("--seed", seed, "init seed; the data uses seed+1");
    app.add_option("--steps", steps, "AdamW steps after the gradient dump");
    app.add_option("--norm-noise", norm_noise,
                   "norm gains become 1 + noise·N(0,1) instead of 1 (exercises their products)");
    app.add_option("--lr", lr, "AdamW learning rate (constant)");
    app.add_option("--expert-bias-noise", expert_bias_noise,
                   "MoE expert biases become noise·N(0,1) instead of 0 (exercises the choice)");
    app.add_option("--out", out, "output .safetensors file")->required();
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    }

    if (vocab < 1 || B < 1 || T < 1 || steps < 0)
        agpt::fail("--vocab, --batch and --seq must be positive, --steps non-negative");
    agpt::ModelArgs args = agpt::resolve_model_args(flavor, switches);
    args.vocab_size = vocab;

    agpt::Transformer model(args, B, T);
    model.init_weights("agpt", seed);
    if (norm_noise > 0) {
        agpt::Rng noise(seed + 7);
        for (const auto& v : model.param_views())
            if (v.role == "norm")
                for (std::size_t i = 0; i < v.numel(); ++i)
                    model.params()[v.offset + i] =
                        static_cast<float>(1.0 + norm_noise * noise.normal());
    }

    if (expert_bias_noise > 0) {
        agpt::Rng noise(seed + 11);
        for (const auto& v : model.param_views())
            if (v.role == "expert_bias")
                for (std::size_t i = 0; i < v.numel(); ++i)
                    model.params()[v.offset + i] =
                        static_cast<float>(expert_bias_noise * noise.normal());
    }

    agpt::SafetensorsWriter w;
    w.set_metadata("flavor", flavor);
    w.set_metadata("dim", std::to_string(args.dim));
    w.set_metadata("n_layers", std::to_string(args.n_layers));
    w.set_metadata("n_heads", std::to_string(args.n_heads));
    w.set_metadata("n_kv_heads", std::to_string(args.n_kv_heads));
    w.set_metadata("ffn_hidden", std::to_string(args.ffn_hidden()));
    w.set_metadata("rope_theta", fmt::format("{:.17g}", args.rope_theta));
    w.set_metadata("norm_eps", fmt::format("{:.17g}", args.norm_eps));
    w.set_metadata("vocab", std::to_string(args.vocab_size));
    w.set_metadata("lr", fmt::format("{:.17g}", lr));
    w.set_metadata("qk_norm", args.qk_norm ? "1" : "0");
    w.set_metadata("attn_softcap", fmt::format("{:.17g}", args.attn_softcap));
    w.set_metadata("final_softcap", fmt::format("{:.17g}", args.final_softcap));
    w.set_metadata("ffn", agpt::ffn_type_name(args.ffn));
    if (args.mla) {
        w.set_metadata("mla", "1");
        for (const auto& [key, value] : {std::pair{"q_lora_rank", args.q_lora_rank},
                                         {"kv_lora_rank", args.kv_lora_rank},
                                         {"qk_nope_head_dim", args.qk_nope_head_dim},
                                         {"qk_rope_head_dim", args.qk_rope_head_dim},
                                         {"v_head_dim", args.v_head_dim},
                                         {"max_seq_len", args.max_seq_len},
                                         {"original_seq_len", args.original_seq_len},
                                         {"beta_fast", args.beta_fast},
                                         {"beta_slow", args.beta_slow},
                                         {"n_experts", args.n_experts},
                                         {"n_shared_experts", args.n_shared_experts},
                                         {"top_k", args.top_k},
                                         {"moe_hidden", args.moe_hidden},
                                         {"n_dense_layers", args.n_dense_layers},
                                         {"route_norm", static_cast<int>(args.router.route_norm)}})
            w.set_metadata(key, std::to_string(value));
        for (const auto& [key, value] : {std::pair{"rope_factor", args.rope_factor},
                                         {"mscale", args.mscale},
                                         {"route_scale", args.router.route_scale},
                                         {"aux_loss_alpha", args.aux_loss_alpha}})
            w.set_metadata(key, fmt::format("{:.17g}", value));
        w.set_metadata("router_score", agpt::cpu::router_score_name(args.router.score));
    }
    for (const auto& v : model.param_views())
        w.add("param." + v.name, shape_of(v), model.params().data() + v.offset);

    agpt::Rng rng(seed + 1);
    const std::size_t BT = static_cast<std::size_t>(B) * T;
    std::vector<int32_t> tokens(BT), targets(BT);
    random_tokens(rng, vocab, BT, tokens.data());
    random_tokens(rng, vocab, BT, targets.data());
    w.add("tokens", {B, T}, tokens.data());
    w.add("targets", {B, T}, targets.data());

    std::vector<float> logits(BT * vocab);
    model.forward_logits(tokens.data(), B, T, logits.data());
    w.add("logits", {B, T, vocab}, logits.data());
    for (int layer : model.moe_layer_ids())  // the experts each token chose in that forward
        w.add(fmt::format("route.layers.{}", layer), {B, T, args.top_k},
              model.moe_layer(layer).experts());

    const double scale = 1.0 / static_cast<double>(BT);
    model.zero_grad();
    const double loss = model.forward_backward(tokens.data(), targets.data(), B, T, scale) * scale;
    w.add("loss", {1}, &loss);
    for (const auto& v : model.param_views())
        w.add("grad." + v.name, shape_of(v), model.grads().data() + v.offset);

    // AdamW with torch's step semantics; the batches differ per step so that the run exercises
    // more than one direction.
    agpt::AdamWConfig cfg;
    cfg.lr = lr;
    cfg.beta1 = 0.9;
    cfg.beta2 = 0.95;
    cfg.eps = 1e-8;
    cfg.weight_decay = 0.1;
    agpt::AdamW opt(cfg, model.params().size());
    std::vector<int32_t> train_tokens(steps * BT), train_targets(steps * BT);
    std::vector<double> train_losses(steps), grad_norms(steps);
    for (int s = 0; s < steps; ++s) {
        int32_t* tk = train_tokens.data() + s * BT;
        int32_t* tg = train_targets.data() + s * BT;
        random_tokens(rng, vocab, BT, tk);
        random_tokens(rng, vocab, BT, tg);
        model.zero_grad();
        train_losses[s] = model.forward_backward(tk, tg, B, T, scale) * scale;
        grad_norms[s] = agpt::clip_grad_norm(model.grads().data(), model.grads().size(), 1.0);
        // The flat AdamW would decay the MoE expert biases, which no optimizer owns: keep them.
        std::vector<float> expert_bias;
        for (const auto& v : model.param_views())
            if (v.role == "expert_bias")
                expert_bias.insert(expert_bias.end(), model.params().begin() + v.offset,
                                   model.params().begin() + v.offset + v.numel());
        opt.step(model.params().data(), model.grads().data(), lr);
        std::size_t at = 0;
        for (const auto& v : model.param_views())
            if (v.role == "expert_bias")
                for (std::size_t i = 0; i < v.numel(); ++i)
                    model.params()[v.offset + i] = expert_bias[at++];
    }
    w.add("train_tokens", {steps, B, T}, train_tokens.data());
    w.add("train_targets", {steps, B, T}, train_targets.data());
    w.add("train_losses", {steps}, train_losses.data());
    w.add("train_grad_norms", {steps}, grad_norms.data());
    w.write(out);
    std::printf("agpt_model_dump: %s (%zu tensors), loss %.9f\n", out.c_str(), w.size(), loss);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        return run(argc, argv);
    } catch (const agpt::Error& e) {
        std::fprintf(stderr, "agpt_model_dump: %s\n", e.what());
        return 1;
    }
}
