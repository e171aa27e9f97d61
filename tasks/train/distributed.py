"""Data-parallel training with torchrun: which rank this process is, sums over the ranks, a clean exit."""

from __future__ import annotations

import os


def distributed_context():
    """(rank, world_size, device) from torchrun's environment; (0, 1, None) in a single process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return 0, 1, None
    import torch
    import torch.distributed as dist

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), world_size, device


def leave_distributed() -> None:
    """Wait until every rank is done (rank 0 saves last), then tear the process group down cleanly."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def sum_over_ranks(values: list[float], op: str = "sum") -> list[float]:
    """All-reduce `values` across data-parallel ranks: their sum, or with op="max" the largest."""
    import torch
    import torch.distributed as dist

    # NCCL reduces only CUDA tensors; gloo only CPU ones.
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
    return tensor.tolist()
