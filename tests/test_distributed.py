"""The one training function as 2 processes under torchrun (gloo on CPU).

Each process draws its share of the same global batch, so 2 processes take the steps 1 takes:
same losses, same weights (to float rounding). Runs resume across process counts, a NaN on one
process skips the step on both, and a killed process makes torchrun restart the job, which goes
on from its last checkpoint and ends with the uninterrupted run's weights.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cinecube.model_folder import checkpoint_dirs
from cinecube.train.distributed import Parallel

WORKER = Path(__file__).parent / "helpers" / "distributed_worker.py"
TINY = ["--preset", "tiny", "--tokens-per-step", "1024", "--sample-every", "1000", "--log-every", "1"]


def _torchrun(run: Path, *args: str, failure: str = "none", restarts: int = 0, processes: int = 2):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    command += [f"--max-restarts={restarts}", str(WORKER), failure, "--", "train", *TINY, "--parallel", "ddp"]
    command += [*args, "--out", str(run)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def _single(run: Path, *args: str):
    from cinecube.cli import main

    assert main(["train", *TINY, *args, "--out", str(run)]) == 0


def _losses(run: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(checkpoint_dirs(run)[-1] / "training" / "raw.safetensors"))


def _assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], rtol=1e-4, atol=1e-6, msg=key)


def test_shares_split_a_global_batch_without_overlap_or_loss():
    plan = [(i, tokens) for i, tokens in enumerate([512, 64, 256, 256, 64, 128, 32])]
    shares = [Parallel("ddp", rank, 3).share(plan) for rank in range(3)]
    assert sorted(i for share in shares for i in share) == list(range(7))  # each clip once
    loads = [sum(dict(plan)[i] for i in share) for share in shares]
    assert max(loads) - min(loads) <= 512  # balanced to within one video
    assert Parallel("ddp", 3, 4).share([(0, 10), (1, 10), (2, 10)]) == [-1]  # an empty share: a weightless stand-in
    assert Parallel().share(plan) == list(range(7))


def test_two_processes_take_the_steps_one_process_takes(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    _single(one, "--steps", "3", "--checkpoint-every", "3")
    _torchrun(two, "--steps", "3", "--checkpoint-every", "3")
    assert _losses(one) == pytest.approx(_losses(two), rel=1e-5)
    _assert_same_weights(one, two)
    assert json.loads((two / "run.json").read_text())["processes"] == 2


@pytest.mark.slow
def test_a_run_resumes_with_another_number_of_processes(tmp_path):
    straight, changed = tmp_path / "straight", tmp_path / "changed"
    _single(straight, "--steps", "4", "--checkpoint-every", "2")
    _torchrun(changed, "--steps", "2", "--checkpoint-every", "2")  # 2 processes ...
    _single(changed, "--steps", "4", "--checkpoint-every", "2", "--resume")  # ... then 1
    _assert_same_weights(straight, changed)
    reverse = tmp_path / "reverse"
    _single(reverse, "--steps", "2", "--checkpoint-every", "2")  # 1 process, then 2
    _torchrun(reverse, "--steps", "4", "--checkpoint-every", "2", "--resume")
    _assert_same_weights(straight, reverse)


@pytest.mark.slow
def test_a_nan_on_one_process_skips_the_step_on_both(tmp_path):
    run = tmp_path / "run"
    out = _torchrun(run, "--steps", "3", "--checkpoint-every", "3", failure="nan-on-rank-1-step-1")
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r.get("skipped", False) for r in records] == [False, True, False]
    assert "non-finite loss" in out.stderr
    assert all(torch.isfinite(t).all() for t in _weights(run).values())


@pytest.mark.slow
def test_a_killed_process_restarts_the_job_from_its_last_checkpoint(tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    _single(straight, "--steps", "4", "--checkpoint-every", "2")
    out = _torchrun(killed, "--steps", "4", "--checkpoint-every", "2", failure="exit-rank-1-step-3-first-attempt",
                    restarts=1)  # fmt: skip
    assert [d.name for d in checkpoint_dirs(killed)][-1] == "step_0000004"
    _assert_same_weights(straight, killed)
    steps = [json.loads(line)["step"] for line in (killed / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4], out.stderr[-2000:]  # step 3 of the failed attempt is not logged twice
