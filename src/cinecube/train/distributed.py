"""What differs when the one training function runs as N processes under torchrun.

`train()` runs the same code for one process and for N; everything that differs goes through
a `Parallel`:

- **Data.** Every process plans the same global batch (the stream's `next_plan` is cheap: sizes
  and token counts only) and draws only its share (`share`), balanced by tokens. The stream's
  state is one integer, the same on every process, so a run resumes exactly with any number
  of processes. In an epoch no clip is seen twice or dropped: the global batches are those of
  one process.
- **Loss.** Each process's mean over its own tokens is scaled by its share of the global token
  count (`scale`), so after DDP averages the gradients, N processes take the step one process
  takes on the same global batch.
- **Agreement.** A non-finite loss on any process skips the step on all of them (`any`), and
  a stop request (Ctrl-C, SIGTERM) on any stops all of them at the same step.
- **Writing.** Only the main process writes the run folder (checkpoints, metrics, samples).
- **Wrapping.** DDP wraps the model (`wrap`); its replicas stay identical, so the main
  process's weights are the run's.

Process groups use gloo on CPU and NCCL on GPU. Collectives time out (`COLLECTIVE_TIMEOUT`)
with a message that names the likely cause instead of a silent stall. Restarted workers of
an elastic run (torchrun --max-restarts) meet in a store prefixed with the restart count, so
they never read the addresses of the crashed attempt's peers.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from ..errors import CinecubeError

PARALLEL_KINDS = ("none", "ddp")
COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=10)


@dataclass
class Parallel:
    """This process's place in the run: `world` processes, this one `rank`."""

    kind: str = "none"
    rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def share(self, plan: list[tuple[int, int]]) -> list[int]:
        """This process's stream indices of a global batch plan [(index, tokens), ...].

        Largest first, each to the process with the fewest tokens so far (ties: the lowest
        rank): deterministic, and balanced to within one video. A process left with nothing
        (fewer videos than processes) gets -1-index of the smallest video, which it computes
        with a loss weight of 0, so every process runs forward and backward."""
        if not self.distributed:
            return [index for index, _ in plan]
        loads = [0] * self.world
        shares: list[list[int]] = [[] for _ in range(self.world)]
        for index, tokens in sorted(plan, key=lambda p: (-p[1], p[0])):
            rank = min(range(self.world), key=lambda r: (loads[r], r))
            loads[rank] += tokens
            shares[rank].append(index)
        mine = sorted(shares[self.rank])
        if not mine:
            smallest = min(plan, key=lambda p: (p[1], p[0]))[0]
            return [-1 - smallest]
        return mine

    def sum(self, value: float) -> float:
        """The sum of `value` over all processes."""
        if not self.distributed:
            return float(value)
        tensor = torch.tensor([float(value)], dtype=torch.float64, device=self._collective_device)
        self._run(dist.all_reduce, tensor)
        return float(tensor.item())

    def any(self, flag: bool) -> bool:
        return self.sum(1.0 if flag else 0.0) > 0

    def barrier(self) -> None:
        if self.distributed:
            self._run(dist.barrier)

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The module the optimizer trains: the model itself, or DDP around it."""
        if self.kind == "ddp" and self.distributed:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            return DistributedDataParallel(model, device_ids=ids)
        return model

    def close(self) -> None:
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()

    @property
    def _collective_device(self) -> torch.device:
        return self.device if self.device.type == "cuda" else torch.device("cpu")

    def _run(self, op, *args) -> None:
        try:
            op(*args)
        except RuntimeError as error:
            if "timeout" in str(error).lower() or "timed out" in str(error).lower():
                raise CinecubeError(
                    f"rank {self.rank}: a collective waited {COLLECTIVE_TIMEOUT} for the other processes; one of "
                    "them is stuck or gone (its log says which)"
                ) from None
            raise


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside a DDP wrapper (or the model)."""
    return getattr(model, "module", model)


def start_parallel(kind: str, device: torch.device) -> Parallel:
    """The process group of a run started by torchrun (WORLD_SIZE, RANK, LOCAL_RANK set), or a
    single process. `kind` "none" refuses to run as several processes, where each would train
    alone on the whole data and write the same run folder."""
    if kind not in PARALLEL_KINDS:
        raise CinecubeError(f"--parallel {kind!r} is not allowed; use one of {', '.join(PARALLEL_KINDS)}")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Parallel(kind, 0, 1, device)
    if kind == "none":
        raise CinecubeError(f"this is one of {world} processes started by torchrun: pass --parallel ddp")
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        # A store per restart attempt: restarted workers must not read the crashed attempt's
        # peer addresses from the store torchrun keeps across attempts.
        attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
        base = dist.TCPStore(
            os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=False, timeout=COLLECTIVE_TIMEOUT
        )
        store = dist.PrefixStore(f"cinecube_attempt_{attempt}", base)
        dist.init_process_group(backend, store=store, rank=rank, world_size=world, timeout=COLLECTIVE_TIMEOUT)
    return Parallel(kind, rank, world, device)
