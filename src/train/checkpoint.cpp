#include "train/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "core/safetensors.h"
#include "model/hf_llama.h"
#include "model/hf_llama_io.h"
#include "model/transformer.h"

namespace agpt {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kFormat = "agpt-checkpoint";
constexpr int kVersion = 1;

std::string read_file(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    if (!in) fail("{}: cannot open file", p.string());
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

uint32_t crc32_of(const std::string& bytes) {
    uLong crc = crc32(0L, Z_NULL, 0);
    std::size_t done = 0;
    while (done < bytes.size()) {  // zlib takes 32-bit lengths
        const std::size_t n = std::min<std::size_t>(bytes.size() - done, 1u << 30);
        crc = crc32(crc, reinterpret_cast<const Bytef*>(bytes.data() + done), static_cast<uInt>(n));
        done += n;
    }
    return static_cast<uint32_t>(crc);
}

void fsync_path(const fs::path& p) {
    const int fd = ::open(p.c_str(), O_RDONLY);
    if (fd < 0) fail("{}: cannot open to sync", p.string());
    const int rc = ::fsync(fd);
    ::close(fd);
    if (rc != 0) fail("{}: fsync failed", p.string());
}

void write_synced(const fs::path& p, const std::string& text) {
    {
        std::ofstream out(p, std::ios::binary);
        out << text;
        if (!out.flush()) fail("{}: write failed", p.string());
    }
    fsync_path(p);
}

std::string step_name(int step) {
    return "step-" + std::to_string(step);
}

json read_json(const fs::path& p) {
    try {
        return json::parse(read_file(p));
    } catch (const json::exception& e) {
        fail("{}: not valid JSON ({})", p.string(), e.what());
    }
}

// Checks the manifest and every listed file's size and CRC; returns the manifest.
json verify(const fs::path& dir) {
    const fs::path manifest_path = dir / "manifest.json";
    if (!fs::exists(manifest_path))
        fail("{}: incomplete checkpoint (no manifest.json)", dir.string());
    const json manifest = read_json(manifest_path);
    if (manifest.value("format", "") != kFormat || manifest.value("version", 0) != kVersion)
        fail("{}: not an {} version {} manifest", manifest_path.string(), kFormat, kVersion);
    if (!manifest.contains("files") || !manifest["files"].is_object())
        fail("{}: no file list", manifest_path.string());
    for (const auto& [name, info] : manifest["files"].items()) {
        const fs::path p = dir / name;
        if (!fs::exists(p)) fail("{}: missing (listed in the manifest)", p.string());
        const std::string bytes = read_file(p);
        if (bytes.size() != info.value("bytes", std::size_t{0}))
            fail("{}: {} bytes, the manifest says {} (truncated or replaced)", p.string(),
                 bytes.size(), info.value("bytes", std::size_t{0}));
        if (crc32_of(bytes) != info.value("crc32", uint32_t{0}))
            fail("{}: checksum mismatch (corrupted)", p.string());
    }
    return manifest;
}

// The model when it holds tensor-parallel shards, else nullptr: checkpoints hold full tensors,
// gathered on save and sliced on load.
const Transformer* sharded_model(const LanguageModel& model) {
    const auto* t = dynamic_cast<const Transformer*>(&model.layout_model());
    return t && t->tensor_parallel().active() ? t : nullptr;
}

const ShardSpec* shard_of(const Transformer* sharded, std::size_t view) {
    if (sharded == nullptr) return nullptr;
    const ShardSpec& s = sharded->shards()[view];
    return s.split == ShardSpec::Split::replicated ? nullptr : &s;
}

std::vector<int64_t> shape64(const std::vector<int>& shape) {
    return {shape.begin(), shape.end()};
}

// The view a per-parameter optimizer state tensor ("<prefix>.<view name>.<suffix>") belongs to,
// when its shape is that view's local (full = false) or full shape; else -1.
int state_view(const Transformer& m, const std::string& state_name,
               const std::vector<int64_t>& shape, bool full) {
    const auto& views = m.param_views();
    for (std::size_t i = 0; i < views.size(); i++) {
        if (state_name.find("." + views[i].name + ".") == std::string::npos) continue;
        const std::vector<int> want =
            full ? m.shards()[i].full_shape(views[i].shape) : views[i].shape;
        if (shape == shape64(want)) return static_cast<int>(i);
    }
    return -1;
}

void read_model(const fs::path& file, LanguageModel& model, std::vector<float>& out) {
    const SafetensorsFile st(file.string());
    const Transformer* sharded = sharded_model(model);
    out.assign(model.params().size(), 0.0f);
    std::vector<float> full;
    for (std::size_t i = 0; i < model.param_views().size(); i++) {
        const ParamView& v = model.param_views()[i];
        const ShardSpec* shard = shard_of(sharded, i);
        const std::string hf = model.checkpoint_name(v.name);
        if (!st.contains(hf)) fail("{}: no tensor '{}'", file.string(), hf);
        const auto& t = st.tensor(hf);
        const std::vector<int64_t> want = shape64(shard ? shard->full_shape(v.shape) : v.shape);
        if (t.shape != want)
            fail("{}: tensor '{}' has shape [{}], the model needs [{}]", file.string(), hf,
                 fmt::join(t.shape, ", "), fmt::join(want, ", "));
        if (shard == nullptr) {
            st.read_into<float>(hf, out.data() + v.offset, v.numel());
            continue;
        }
        full.resize(shard->full_numel());
        st.read_into<float>(hf, full.data(), full.size());
        take_shard(*shard, full.data(), out.data() + v.offset);
    }
}

}  // namespace

std::string CheckpointStore::path_of(int step) const {
    return (fs::path(root_) / step_name(step)).string();
}

void check_tensor_parallel_state(const LanguageModel& model, Optimizer& optimizer) {
    const Transformer* sharded = sharded_model(model);
    if (sharded == nullptr) return;
    for (const OptimStateTensor& t : optimizer.state_tensors())
        if (!t.shape.empty() && state_view(*sharded, t.name, t.shape, false) < 0)
            fail(
                "optimizer {}: state '{}' is not a per-parameter tensor; tensor-parallel "
                "checkpoints gather per-parameter state only (use checkpoint.enable = false or "
                "tensor_parallel_degree = 1)",
                optimizer.name(), t.name);
}

std::string CheckpointStore::save(const TrainState& state, LanguageModel& model,
                                  Optimizer* optimizer, const std::string& config_toml) const {
    // Under TP every rank of the group gathers (collectives); its rank 0 writes.
    const Transformer* sharded = sharded_model(model);
    const bool writer = sharded == nullptr || sharded->tensor_parallel().rank == 0;
    const TensorParallel tp = sharded ? sharded->tensor_parallel() : TensorParallel{};
    std::vector<float> full;
    SafetensorsWriter weights;
    for (std::size_t i = 0; i < model.param_views().size(); i++) {
        const ParamView& v = model.param_views()[i];
        const float* data = model.params().data() + v.offset;
        std::vector<int> shape = v.shape;
        if (const ShardSpec* shard = shard_of(sharded, i)) {
            full.resize(shard->full_numel());
            gather_shard(*shard, data, full.data(), tp);
            data = full.data();
            shape = shard->full_shape(v.shape);
        }
        if (writer) weights.add<float>(model.checkpoint_name(v.name), shape64(shape), data);
    }
    weights.set_metadata("format", "pt");
    SafetensorsWriter opt;
    if (optimizer) {
        for (const OptimStateTensor& t : optimizer->state_tensors()) {
            const int view = sharded ? state_view(*sharded, t.name, t.shape, false) : -1;
            const ShardSpec* shard = view >= 0 ? shard_of(sharded, view) : nullptr;
            if (shard == nullptr) {
                if (writer) opt.add_bytes(t.name, t.dtype, t.shape, t.data);
                continue;
            }
            full.resize(shard->full_numel());
            gather_shard(*shard, static_cast<const float*>(t.data), full.data(), tp);
            if (writer)
                opt.add<float>(t.name,
                               shape64(shard->full_shape(sharded->param_views()[view].shape)),
                               full.data());
        }
        opt.set_metadata("optimizer", optimizer->name());
    }
    if (!writer) return "";

    const fs::path final_dir = path_of(state.step);
    const fs::path tmp = final_dir.string() + ".tmp";
    fs::remove_all(tmp);  // debris of an interrupted save of the same step
    fs::create_directories(tmp);
    weights.write((tmp / "model.safetensors").string());
    if (optimizer) opt.write((tmp / "optimizer.safetensors").string());
    write_synced(tmp / "trainer_state.json", json{{"step", state.step},
                                                  {"loader_epoch", state.loader_epoch},
                                                  {"loader_position", state.loader_position},
                                                  {"data_parallel", state.data_parallel}}
                                                 .dump(2));
    write_synced(tmp / "config.toml", config_toml);

    finalize_checkpoint(tmp.string(), final_dir.string(), state.step, optimizer == nullptr);
    return final_dir.string();
}

void finalize_checkpoint(const std::string& tmp_dir, const std::string& final_dir, int step,
                         bool model_only) {
    const fs::path tmp(tmp_dir);
    json files = json::object();
    for (const char* name :
         {"model.safetensors", "optimizer.safetensors", "trainer_state.json", "config.toml"}) {
        if (!fs::exists(tmp / name)) continue;
        const std::string bytes = read_file(tmp / name);
        files[name] = {{"bytes", bytes.size()}, {"crc32", crc32_of(bytes)}};
    }
    write_synced(tmp / "manifest.json", json{{"format", kFormat},
                                             {"version", kVersion},
                                             {"step", step},
                                             {"model_only", model_only},
                                             {"files", files}}
                                            .dump(2));
    fsync_path(tmp);
    if (fs::exists(final_dir)) fs::remove_all(final_dir);  // a re-save of the same step
    fs::rename(tmp, final_dir);
    const fs::path parent = fs::absolute(final_dir).parent_path();
    fsync_path(parent);
}

void verify_checkpoint(const std::string& step_dir) {
    verify(step_dir);
}

std::vector<int> CheckpointStore::steps() const {
    std::vector<int> out;
    if (!fs::is_directory(root_)) return out;
    for (const auto& e : fs::directory_iterator(root_)) {
        const std::string name = e.path().filename().string();
        if (!e.is_directory() || !name.starts_with("step-") ||
            name.find_first_not_of("0123456789", 5) != std::string::npos || name.size() == 5)
            continue;
        if (fs::exists(e.path() / "manifest.json")) out.push_back(std::stoi(name.substr(5)));
    }
    std::sort(out.begin(), out.end());
    return out;
}

TrainState CheckpointStore::load(int step, LanguageModel& model, Optimizer* optimizer) const {
    const fs::path dir = path_of(step);
    if (!fs::is_directory(dir)) fail("{}: no such checkpoint", dir.string());
    const json manifest = verify(dir);
    if (optimizer && manifest.value("model_only", false))
        fail(
            "{}: holds the model only (checkpoint.last_save_model_only); it cannot resume "
            "training",
            dir.string());

    std::vector<float> weights;
    read_model(dir / "model.safetensors", model, weights);
    std::unique_ptr<SafetensorsFile> opt_file;
    if (optimizer) {
        const fs::path p = dir / "optimizer.safetensors";
        opt_file = std::make_unique<SafetensorsFile>(p.string());
        const auto& meta = opt_file->metadata();
        const auto written_by = meta.find("optimizer");
        if (written_by == meta.end() || written_by->second != optimizer->name())
            fail(
                "{}: holds the state of optimizer {}; this run uses {} (set optimizer.name to "
                "match, or start a new run from its weights with checkpoint.initial_load_path)",
                p.string(), written_by == meta.end() ? "(unnamed)" : written_by->second,
                optimizer->name());
    }
    const json st = read_json(dir / "trainer_state.json");
    TrainState state;
    try {
        state.step = st.at("step").get<int>();
        state.loader_epoch = st.at("loader_epoch").get<long>();
        state.loader_position = st.at("loader_position").get<long>();
        state.data_parallel = st.value("data_parallel", 1);
    } catch (const json::exception& e) {
        fail("{}: {}", (dir / "trainer_state.json").string(), e.what());
    }
    if (state.step != step)
        fail("{}: records step {} in a folder for step {}", dir.string(), state.step, step);

    if (optimizer) {
        std::map<std::string, SavedStateTensor> saved;
        // Under TP, per-parameter state of sharded views is sliced like the parameters.
        const Transformer* sharded = sharded_model(model);
        std::vector<std::vector<float>> slices;
        for (const std::string& name : opt_file->names()) {
            const SafetensorsTensor& t = opt_file->tensor(name);
            saved[name] = {t.dtype, t.shape, opt_file->raw(name)};
            const int view = sharded && t.dtype == SafetensorsDtype::F32
                                 ? state_view(*sharded, name, t.shape, true)
                                 : -1;
            const ShardSpec* shard = view >= 0 ? shard_of(sharded, view) : nullptr;
            if (shard == nullptr) continue;
            std::vector<float> full(shard->full_numel());
            opt_file->read_into<float>(name, full.data(), full.size());
            slices.emplace_back(shard->local_numel());
            take_shard(*shard, full.data(), slices.back().data());
            saved[name] = {t.dtype, shape64(sharded->param_views()[view].shape),
                           slices.back().data()};
        }
        try {
            optimizer->load_state(saved);
        } catch (const Error& e) {
            fail("{}: {}", opt_file->path(), e.what());
        }
    }
    // Copied into place: the optimizer holds pointers into the parameter buffer.
    std::copy(weights.begin(), weights.end(), model.params().begin());
    return state;
}

std::optional<TrainState> CheckpointStore::load_latest(
    int step, LanguageModel& model, Optimizer* optimizer,
    const std::function<void(const std::string&)>& warn) const {
    if (step >= 0) return load(step, model, optimizer);
    const std::vector<int> all = steps();
    for (auto it = all.rbegin(); it != all.rend(); ++it) {
        try {
            return load(*it, model, optimizer);
        } catch (const Error& e) {
            warn(fmt::format("skipping checkpoint: {}", e.what()));
        }
    }
    return std::nullopt;
}

void CheckpointStore::prune(int keep_k) const {
    if (keep_k <= 0) return;
    const std::vector<int> all = steps();
    for (std::size_t i = 0; i + static_cast<std::size_t>(keep_k) < all.size(); i++)
        fs::remove_all(path_of(all[i]));
}

void load_model_weights(const std::string& step_dir, LanguageModel& model) {
    // A Hugging Face folder (config.json + model.safetensors) is checked against the model too.
    if (is_hf_llama_folder(step_dir)) {
        auto* llama = dynamic_cast<Transformer*>(&model);
        if (llama == nullptr)
            fail("{}: a Hugging Face Llama folder loads into the agpt family only", step_dir);
        if (sharded_model(model))
            fail(
                "{}: a Hugging Face folder does not load into a tensor-parallel model; convert it "
                "with agpt import --hf into a checkpoint step folder first",
                step_dir);
        return load_hf_llama_weights(step_dir, *llama);
    }
    const fs::path dir(step_dir);
    const fs::path file = fs::is_directory(dir) ? dir / "model.safetensors" : dir;
    if (fs::is_directory(dir) && fs::exists(dir / "manifest.json")) verify(dir);
    std::vector<float> weights;
    read_model(file, model, weights);
    // Copied into place: the optimizer holds pointers into the parameter buffer.
    std::copy(weights.begin(), weights.end(), model.params().begin());
}

}  // namespace agpt
