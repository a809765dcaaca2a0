// agpt_hf_logits: the logits a run's checkpoint gives for one token sequence, written to a
// safetensors file ("logits" (T,V) F32, "ids" (T) I32). tests/torch_ref/test_hf_export.py
// compares them with a Llama built from the exported Hugging Face folder.
#include <CLI/CLI.hpp>
#include <cstdint>
#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/safetensors.h"
#include "tools/run_model.h"

namespace {

int run(int argc, char** argv) {
    std::string run_dir, ids_text, out;
    int step = -1;
    CLI::App app{"Dump the logits of a run's checkpoint for a token sequence"};
    app.add_option("--run", run_dir, "run folder")->required();
    app.add_option("--step", step, "checkpoint step (default: the newest)");
    app.add_option("--ids", ids_text, "token ids, space-separated")->required();
    app.add_option("--out", out, "output .safetensors file")->required();
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    }
    std::vector<int32_t> ids;
    std::istringstream in(ids_text);
    for (long v; in >> v;) ids.push_back(static_cast<int32_t>(v));
    if (ids.empty()) agpt::fail("--ids: no ids");
    const int T = static_cast<int>(ids.size());
    agpt::RunModel rm = agpt::load_run_model(run_dir, step, 1, T);
    const int V = rm.model->args().vocab_size;
    std::vector<float> logits(static_cast<std::size_t>(T) * V);
    rm.model->forward_logits(ids.data(), 1, T, logits.data());
    agpt::SafetensorsWriter w;
    w.add<float>("logits", {T, V}, logits.data());
    w.add<int32_t>("ids", {T}, ids.data());
    w.write(out);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        return run(argc, argv);
    } catch (const agpt::Error& e) {
        std::fprintf(stderr, "agpt_hf_logits: error: %s\n", e.what());
        return 1;
    }
}
