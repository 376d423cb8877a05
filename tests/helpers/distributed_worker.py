"""A training process for tests under torchrun: `cinecube train` with one failure injected.

    torchrun --nproc_per_node 2 tests/helpers/distributed_worker.py FAILURE -- train ARGS...

FAILURE is "none", "nan-on-rank-1-step-1" (that process's loss is NaN at step 1) or
"exit-rank-1-step-3-first-attempt" (that process dies at step 3 of the first attempt, as a
killed rank does).
"""

import os
import sys

import torch

from cinecube.cli import main
from cinecube.train import loop

failure = sys.argv[1]
rank = int(os.environ.get("RANK", "0"))
real_loss = loop._loss_for_batch


def injected(model, autoencoder, text_encoder, objective, batch, keys, train, step, *rest):
    loss, tokens = real_loss(model, autoencoder, text_encoder, objective, batch, keys, train, step, *rest)
    if failure == "nan-on-rank-1-step-1" and rank == 1 and step == 1:
        loss = loss * float("nan")
    first_attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0"
    if failure == "exit-rank-1-step-3-first-attempt" and rank == 1 and step == 3 and first_attempt:
        os._exit(1)
    return loss, tokens


loop._loss_for_batch = injected
torch.set_num_threads(1)
sys.exit(main(sys.argv[sys.argv.index("--") + 1 :]))
