#include "dist/parallel_mesh.h"

#include <algorithm>
#include <cctype>

#include "core/error.h"

namespace agpt {

std::string ParallelMesh::describe() const {
    return fmt::format("DP {} × TP {} × EP {} = {} rank{}, ZeRO-{}", data_parallel, tensor_parallel,
                       expert_parallel, world, world == 1 ? "" : "s", zero);
}

ParallelMesh resolve_parallel_mesh(const JobConfig& cfg, const ModelArgs& args, int world_size) {
    const auto& p = cfg.parallelism;
    ParallelMesh mesh;
    mesh.world = world_size;
    mesh.tensor_parallel = p.tensor_parallel_degree;
    mesh.expert_parallel = p.expert_parallel_degree;
    mesh.zero = p.zero;
    const int inner = mesh.tensor_parallel * mesh.expert_parallel;
    if (p.data_parallel_degree == -1) {
        if (world_size % inner != 0)
            fail(
                "parallelism: world size {} is not divisible by tensor_parallel_degree {} × "
                "expert_parallel_degree {} = {}",
                world_size, mesh.tensor_parallel, mesh.expert_parallel, inner);
        mesh.data_parallel = world_size / inner;
    } else {
        mesh.data_parallel = p.data_parallel_degree;
        if (mesh.data_parallel * inner != world_size)
            fail(
                "parallelism: world size {} is not data_parallel_degree {} × "
                "tensor_parallel_degree {} × expert_parallel_degree {} = {}",
                world_size, mesh.data_parallel, mesh.tensor_parallel, mesh.expert_parallel,
                mesh.data_parallel * inner);
    }
    if (args.n_heads % mesh.tensor_parallel != 0 || args.n_kv_heads % mesh.tensor_parallel != 0)
        fail(
            "parallelism.tensor_parallel_degree = {}: the model's {} attention heads and {} KV "
            "heads must both be divisible by it",
            mesh.tensor_parallel, args.n_heads, args.n_kv_heads);
    if (mesh.expert_parallel > 1 && !args.is_moe())
        fail(
            "parallelism.expert_parallel_degree = {}: the model ({}/{}) has no experts; expert "
            "parallelism needs a MoE flavor",
            mesh.expert_parallel, cfg.model.name, cfg.model.flavor);
    if (mesh.expert_parallel > 1 && args.n_experts % mesh.expert_parallel != 0)
        fail(
            "parallelism.expert_parallel_degree = {}: the model's {} routed experts are not "
            "divisible by it",
            mesh.expert_parallel, args.n_experts);
    if (mesh.expert_parallel > 1) {
        auto refuse = [&](const std::string& what) {
            fail("parallelism.expert_parallel_degree = {} with {}: not implemented yet",
                 mesh.expert_parallel, what);
        };
        if (mesh.zero == 1) refuse("parallelism.zero = 1");
        if (cfg.optimizer.name == "SophiaG" || cfg.optimizer.name == "ScheduleFreeAdamW")
            refuse("optimizer " + cfg.optimizer.name);
    }
    if (mesh.tensor_parallel > 1) {
        const int n = mesh.tensor_parallel;
        if (cfg.model.name != "agpt" || args.mla || args.is_moe())
            fail(
                "parallelism.tensor_parallel_degree = {}: tensor parallelism covers the dense "
                "agpt flavors only, not {}/{}",
                n, cfg.model.name, cfg.model.flavor);
        if (args.ffn_hidden() % n != 0)
            fail(
                "parallelism.tensor_parallel_degree = {}: the model's FFN width {} must be "
                "divisible by it",
                n, args.ffn_hidden());
        std::string optimizer = cfg.optimizer.name;  // names match case-insensitively
        std::transform(optimizer.begin(), optimizer.end(), optimizer.begin(),
                       [](unsigned char c) { return std::tolower(c); });
        if (optimizer == "muon" || optimizer == "mano" || optimizer == "sophiag")
            fail(
                "parallelism.tensor_parallel_degree = {} with optimizer {}: {}; use an "
                "element-wise optimizer (AdamW, Lion, SPAM, AdEMAMix, ScheduleFreeAdamW) or "
                "tensor_parallel_degree = 1",
                n, cfg.optimizer.name,
                optimizer == "sophiag"
                    ? "its Hessian estimate samples labels per rank"
                    : "its orthogonalisation needs whole matrices and TP ranks hold slices");
        if (mesh.zero == 1)
            fail(
                "parallelism.zero = 1 with tensor_parallel_degree = {}: ZeRO-1 over tensor-"
                "parallel shards is not implemented; use parallelism.zero = 0",
                n);
    }
    const auto& t = cfg.training;
    const int per_step = t.local_batch_size * mesh.data_ranks();
    if (t.global_batch_size != -1 && t.global_batch_size % per_step != 0)
        fail(
            "training.global_batch_size = {} is not a multiple of training.local_batch_size {} "
            "× {} data-parallel ranks = {}",
            t.global_batch_size, t.local_batch_size, mesh.data_ranks(), per_step);
    if (mesh.zero == 1) {
        if (cfg.optimizer.name == "SophiaG" || cfg.optimizer.name == "ScheduleFreeAdamW")
            fail(
                "parallelism.zero = 1 with optimizer {}: its Hessian estimate / evaluation "
                "weights need every parameter on every rank; use parallelism.zero = 0",
                cfg.optimizer.name);
    }
    return mesh;
}

}  // namespace agpt
