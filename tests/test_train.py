import dataclasses
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cinecube.config import PRESETS, TRAIN_PRESETS
from cinecube.errors import CheckpointError, CinecubeError
from cinecube.model_folder import checkpoint_dirs, load_model_folder
from cinecube.train import loop
from cinecube.train.loop import train
from cinecube.train.nonfinite import NonFiniteLossError
from cinecube.train.schedule import learning_rate

MODEL = PRESETS["tiny"]


def quick(steps, **kw):
    return dataclasses.replace(
        TRAIN_PRESETS["tiny"],
        steps=steps,
        sample_every=10_000,
        checkpoint_every=kw.pop("checkpoint_every", 2),
        log_every=1,
        **kw,
    )


@pytest.fixture
def no_samples(monkeypatch):
    monkeypatch.setattr(loop, "write_samples", lambda *a, **k: None)


def test_run_folder_has_checkpoints_metrics_samples_and_plot(tiny_run):
    assert (tiny_run / "loss.png").stat().st_size > 1000
    assert list((tiny_run / "samples").glob("*.mp4"))
    records = [json.loads(line) for line in (tiny_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    dirs = checkpoint_dirs(tiny_run)
    assert [d.name for d in dirs] == ["step_0000002", "step_0000004"]
    ckpt = load_model_folder(tiny_run)
    assert ckpt.step == 4 and ckpt.model_config == MODEL
    assert not list((tiny_run / "checkpoints").glob(".*"))  # no temporary folders left


def test_resume_gives_exactly_the_same_weights(tmp_path, no_samples):
    straight = tmp_path / "straight"
    train(MODEL, quick(6), straight, progress=False)
    resumed = tmp_path / "resumed"
    train(MODEL, quick(6), resumed, progress=False, stop_after=4)  # "interrupted" at 4
    train(MODEL, quick(6), resumed, progress=False, resume=True)
    for name in ("model.safetensors", "training/raw.safetensors"):
        a = load_file(str(checkpoint_dirs(straight)[-1] / name))
        b = load_file(str(checkpoint_dirs(resumed)[-1] / name))
        assert a.keys() == b.keys()
        for key in a:
            # Same weights up to float rounding: CPU BLAS kernels may round differently with
            # the memory alignment of their inputs, even within one process.
            torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-7, msg=key)
    steps = [json.loads(x)["step"] for x in (resumed / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_existing_run_is_not_overwritten_without_resume(tmp_path, no_samples):
    train(MODEL, quick(2), tmp_path, progress=False)
    with pytest.raises(CinecubeError, match="--resume"):
        train(MODEL, quick(2), tmp_path, progress=False)


def test_non_finite_loss_skips_the_step_and_is_reported(tmp_path, no_samples, monkeypatch, capsys):
    real = loop._loss_for_batch
    calls = {"n": 0}

    def sometimes_nan(*args, **kwargs):
        loss, n = real(*args, **kwargs)
        calls["n"] += 1
        return (loss * float("nan") if calls["n"] == 2 else loss), n

    monkeypatch.setattr(loop, "_loss_for_batch", sometimes_nan)
    result = train(MODEL, quick(3, checkpoint_every=1), tmp_path, progress=False)
    assert result.step == 3
    assert "non-finite loss" in capsys.readouterr().err
    # The skipped step counts (its batch and noise are spent) and is logged as skipped.
    records = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r.get("skipped", False), r["loss"] is None) for r in records] == [
        (1, False, False),
        (2, True, True),
        (3, False, False),
    ]
    for ckpt in checkpoint_dirs(tmp_path):
        for tensor in load_file(str(ckpt / "training" / "raw.safetensors")).values():
            assert torch.isfinite(tensor).all()

    monkeypatch.setattr(loop, "_loss_for_batch", lambda *a, **k: (torch.tensor(float("inf"), requires_grad=True), 1))
    with pytest.raises(NonFiniteLossError, match="5 non-finite"):  # five skipped steps in a row
        train(MODEL, quick(8), tmp_path / "bad", progress=False)


def test_tiny_model_loss_falls(tmp_path, no_samples):
    config = quick(60, checkpoint_every=60, lr=2e-3, warmup_steps=5)
    train(MODEL, config, tmp_path, progress=False)
    losses = [json.loads(x)["loss"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.7 * first, (first, last)


def test_corrupt_or_missing_checkpoints_give_clear_errors(tmp_path, tiny_run):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model_folder(tmp_path / "nowhere")
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(checkpoint_dirs(tiny_run)[-1], broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: len(weights.read_bytes()) // 2])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_model_folder(broken)
    (broken / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="config.json"):
        load_model_folder(broken)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="neither"):
        load_model_folder(tmp_path / "empty")


def test_init_from_starts_a_new_run_from_other_weights(tmp_path, tiny_run, no_samples):

    source = load_model_folder(tiny_run).weights
    run = tmp_path / "finetune"
    train(MODEL, quick(1, checkpoint_every=1, lr=1e-12, warmup_steps=1), run, progress=False, init_from=tiny_run)
    tuned = load_file(str(checkpoint_dirs(run)[-1] / "training" / "raw.safetensors"))
    for key, value in source.items():
        torch.testing.assert_close(tuned[key], value, atol=1e-6, rtol=1e-5)
    # The run records where its weights started, and a resume keeps that record.
    assert json.loads((run / "run.json").read_text())["init_from"] == str(Path(tiny_run).resolve())
    train(MODEL, quick(2, checkpoint_every=1, lr=1e-12, warmup_steps=1), run, progress=False, resume=True)
    assert json.loads((run / "run.json").read_text())["init_from"] == str(Path(tiny_run).resolve())
    # Resuming with the same --init-from (the start command plus --resume) is fine; another
    # source cannot apply to a run that has weights of its own, and is refused, not ignored.
    train(
        MODEL,
        quick(3, checkpoint_every=1, lr=1e-12, warmup_steps=1),
        run,
        progress=False,
        resume=True,
        init_from=tiny_run,
    )
    with pytest.raises(CinecubeError, match="cannot apply"):
        train(MODEL, quick(4, checkpoint_every=1), run, progress=False, resume=True, init_from=tmp_path / "elsewhere")
    assert len(checkpoint_dirs(run)) >= 1 and json.loads((run / "run.json").read_text())["init_from"] == str(
        Path(tiny_run).resolve()
    )
    with pytest.raises(CheckpointError, match="differs"):
        train(PRESETS["small"], quick(1), tmp_path / "other", progress=False, init_from=tiny_run)


def test_init_from_a_shallower_model_grows_it_deeper(tmp_path, tiny_run, no_samples, capsys):
    from cinecube.cli import main
    from cinecube.transformer import deepened_state_dict

    source = load_model_folder(tiny_run).weights
    depth = MODEL.transformer.depth
    deeper = dataclasses.replace(MODEL, transformer=dataclasses.replace(MODEL.transformer, depth=depth + 1))
    run = tmp_path / "deeper"
    train(deeper, quick(1, checkpoint_every=1, lr=1e-12, warmup_steps=1), run, progress=False, init_from=tiny_run)
    tuned = load_file(str(checkpoint_dirs(run)[-1] / "training" / "raw.safetensors"))
    expected = deepened_state_dict(source, depth, depth + 1)
    assert tuned.keys() == expected.keys() and len([k for k in tuned if k.startswith(f"blocks.{depth}.")]) > 0
    for key, value in expected.items():
        torch.testing.assert_close(tuned[key], value.float(), atol=1e-6, rtol=1e-5)
    shallower = dataclasses.replace(MODEL, transformer=dataclasses.replace(MODEL.transformer, depth=depth - 1))
    with pytest.raises(CheckpointError, match="may only grow"):
        train(shallower, quick(1), tmp_path / "shallower", progress=False, init_from=tiny_run)
    # The command line: --depth sets the blocks of a new run and must agree with a resumed one.
    assert (
        main(
            [
                "train",
                "--preset",
                "tiny",
                "--depth",
                str(depth + 1),
                "--steps",
                "1",
                "--init-from",
                str(tiny_run),
                "--sample-every",
                "1000",
                "--out",
                str(tmp_path / "cli"),
            ]
        )
        == 0
    )
    assert load_model_folder(tmp_path / "cli").model_config.transformer.depth == depth + 1
    code = main(
        ["train", "--preset", "tiny", "--depth", str(depth), "--steps", "2", "--resume", "--out", str(tmp_path / "cli")]
    )
    err = capsys.readouterr().err
    assert code == 2 and "--depth" in err and f"has {depth + 1} blocks" in err
    assert main(["train", "--preset", "tiny", "--depth", "0", "--out", str(tmp_path / "zero")]) == 2
    assert "--depth must be 1..64" in capsys.readouterr().err and not (tmp_path / "zero").exists()


def test_init_from_a_model_with_coarser_cubes_refines_them(tmp_path, tiny_run, no_samples, capsys):
    from cinecube.cli import main
    from cinecube.transformer import refined_state_dict

    source = load_model_folder(tiny_run)
    run = tmp_path / "finer"
    finer = dataclasses.replace(MODEL, patch_size=(1, 2, 2))  # from 2x4x4
    train(finer, quick(1, checkpoint_every=1, lr=1e-12, warmup_steps=1), run, progress=False, init_from=tiny_run)
    tuned = load_model_folder(run)
    # The run keeps the geometry of its source: rotary positions and shift base follow the cubes.
    assert tuned.model_config.patch_size == (1, 2, 2)
    assert tuned.model_config.transformer.rope_scale == (0.5, 0.5, 0.5)
    assert tuned.model_config.diffusion.shift_base_tokens == MODEL.diffusion.shift_base_tokens * 8
    raw = load_file(str(checkpoint_dirs(run)[-1] / "training" / "raw.safetensors"))
    expected = refined_state_dict(source.weights, MODEL.patch_size, (1, 2, 2), MODEL.latent_channels)
    assert raw.keys() == expected.keys()
    for key, value in expected.items():
        torch.testing.assert_close(raw[key], value.float(), atol=1e-6, rtol=1e-5)
    # It resumes with its own config, and it generates.
    train(tuned.model_config, quick(2, checkpoint_every=1), run, progress=False, resume=True)
    assert (
        main(
            [
                "generate",
                "a red circle",
                "--model",
                str(run),
                "--frames",
                "3",
                "--height",
                "32",
                "--width",
                "32",
                "--steps",
                "2",
                "-o",
                str(tmp_path / "fine.gif"),
            ]
        )
        == 0
    )
    # A run started from it keeps its cubes and geometry unless told otherwise.
    assert (
        main(
            [
                "train",
                "--preset",
                "tiny",
                "--steps",
                "1",
                "--init-from",
                str(run),
                "--sample-every",
                "1000",
                "--out",
                str(tmp_path / "next"),
            ]
        )
        == 0
    )
    assert load_model_folder(tmp_path / "next").model_config == tuned.model_config
    # Cubes that do not divide the source's are refused in one line, before anything is written.
    code = main(
        [
            "train",
            "--preset",
            "tiny",
            "--patch-size",
            "1,3,4",
            "--steps",
            "1",
            "--init-from",
            str(tiny_run),
            "--out",
            str(tmp_path / "odd"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "divide" in err and not checkpoint_dirs(tmp_path / "odd")


def test_cooldown_decays_the_learning_rate_to_zero_over_the_last_steps(tmp_path, capsys):
    constant = quick(100, warmup_steps=10)
    cooled = dataclasses.replace(constant, cooldown_steps=40)
    rates = [learning_rate(step, cooled) for step in range(100)]
    # Warm-up and the stable phase are those of the constant schedule, so a constant-rate run
    # can be cooled down from any of its checkpoints.
    assert rates[:60] == [learning_rate(step, constant) for step in range(60)]
    assert rates[59] == constant.lr and rates[60] == pytest.approx(constant.lr)
    assert all(a > b > 0 for a, b in zip(rates[60:], rates[61:]))
    assert rates[99] == pytest.approx(constant.lr / 40)
    assert rates[80] == pytest.approx(constant.lr / 2)

    from cinecube.cli import main

    for value in ("-1", "300"):
        assert (
            main(
                [
                    "train",
                    "--preset",
                    "tiny",
                    "--steps",
                    "200",
                    "--cooldown-steps",
                    value,
                    "--out",
                    str(tmp_path / "run"),
                ]
            )
            != 0
        )
        error = capsys.readouterr().err
        assert f"--cooldown-steps must be 0..200 (the run's steps), got {value}" in error
    assert not (tmp_path / "run").exists()
