#include "dist/parallel_mesh.h"

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
    if (mesh.expert_parallel > 1)
        fail(
            "parallelism.expert_parallel_degree = {}: the model (agpt/{}) has no experts; expert "
            "parallelism needs a MoE flavor",
            mesh.expert_parallel, cfg.model.flavor);
    if (mesh.tensor_parallel > 1)
        fail(
            "parallelism.tensor_parallel_degree = {}: tensor parallelism is not implemented yet; "
            "use data parallelism (tensor_parallel_degree = 1)",
            mesh.tensor_parallel);
    const auto& t = cfg.training;
    const int per_step = t.local_batch_size * mesh.data_parallel;
    if (t.global_batch_size != -1 && t.global_batch_size % per_step != 0)
        fail(
            "training.global_batch_size = {} is not a multiple of training.local_batch_size {} "
            "× {} data-parallel ranks = {}",
            t.global_batch_size, t.local_batch_size, mesh.data_parallel, per_step);
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
