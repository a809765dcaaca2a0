#include "model/model_zoo.h"

#include <fmt/format.h>

#include "core/error.h"
#include "model/gpt2.h"
#include "model/transformer.h"

namespace agpt {

const std::vector<std::string>& model_families() {
    static const std::vector<std::string> families{"agpt", "gpt2"};
    return families;
}

std::vector<std::string> family_flavors(const std::string& family) {
    std::vector<std::string> names;
    if (family == "agpt")
        for (const Flavor& f : agpt_flavors()) names.push_back(f.name);
    if (family == "gpt2")
        for (const Gpt2Flavor& f : gpt2_flavors()) names.push_back(f.name);
    return names;
}

std::vector<std::string> family_init_schemes(const std::string& family) {
    if (family == "gpt2") return {"gpt2"};
    return {"agpt", "torchtitan"};
}

ActivationCheckpoint activation_checkpoint_from(const std::string& mode) {
    if (mode == "none") return ActivationCheckpoint::none;
    if (mode == "full") return ActivationCheckpoint::full;
    fail("activation_checkpoint.mode: '{}' is not one of none, full", mode);
}

std::unique_ptr<LanguageModel> make_language_model(const std::string& family,
                                                   const std::string& flavor,
                                                   const ModelSwitches& switches, int vocab_size,
                                                   int max_batch, int max_seq,
                                                   ActivationCheckpoint checkpoint) {
    if (family == "agpt") {
        ModelArgs args = resolve_model_args(flavor, switches);
        if (vocab_size > 0) args.vocab_size = vocab_size;
        return std::make_unique<Transformer>(args, max_batch, max_seq, checkpoint);
    }
    if (family == "gpt2" && checkpoint != ActivationCheckpoint::none)
        fail(
            "model gpt2: activation_checkpoint.mode = full is implemented for model.name = agpt "
            "only");
    if (family == "gpt2") {
        const Gpt2Flavor* f = find_gpt2_flavor(flavor);
        if (f == nullptr) fail("model gpt2: unknown flavor '{}'", flavor);
        const ModelSwitches none;
        if (switches.qk_norm || switches.attn_softcap != none.attn_softcap ||
            switches.final_softcap != none.final_softcap || switches.ffn != none.ffn)
            fail("model gpt2: the GPT-2 family has no architecture switches");
        Gpt2Args args = f->args;
        if (vocab_size > 0) args.vocab_size = vocab_size;
        args.padded_vocab_size = 0;  // the vocabulary rounded up to 128, as llm.c pads it
        return std::make_unique<Gpt2>(args, max_batch, max_seq);
    }
    fail("unknown model family '{}'", family);
}

std::string describe_model(const LanguageModel& model, const std::string& family,
                           const std::string& flavor) {
    const std::string head = fmt::format("{}/{} | {:.2f}M params", family, flavor,
                                         static_cast<double>(model.num_params()) / 1e6);
    if (const ModelArgs* a = model.agpt_args())
        return fmt::format(
            "{}{} | dim {} layers {} heads {}/{} ffn {} vocab {}", head,
            a->is_moe() ? fmt::format(" ({:.2f}M active: FLOPs and MFU count these)",
                                      static_cast<double>(a->num_active_params()) / 1e6)
                        : std::string(),
            a->dim, a->n_layers, a->n_heads, a->n_kv_heads, a->ffn_hidden(), a->vocab_size);
    if (const auto* g = dynamic_cast<const Gpt2*>(&model)) {
        const Gpt2Args& a = g->args();
        return fmt::format("{} | dim {} layers {} heads {} ffn {} vocab {} (padded {}) context {}",
                           head, a.dim, a.n_layers, a.n_heads, a.ffn_hidden(), a.vocab_size,
                           a.padded_vocab(), a.max_seq_len);
    }
    return head;
}

}  // namespace agpt
