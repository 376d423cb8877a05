"""`cinecube train-autoencoder`, `export-autoencoder`, `data cache-latents` and latent-space
transformer training from the command line."""

import argparse
import json

import pytest
import torch
from safetensors.torch import load_file

from cinecube.autoencoder import load_autoencoder
from cinecube.cli import main
from cinecube.commands import autoencoder_training
from cinecube.model_folder import checkpoint_dirs, load_model_folder


def run_cli(*args):
    return main([str(a) for a in args])


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("vae") / "vae"
    assert (
        run_cli(
            "train-autoencoder",
            "--preset",
            "tiny",
            "--steps",
            4,
            "--checkpoint-every",
            2,
            "--worlds",
            "shapes,pans",
            "--out",
            out,
        )
        == 0
    )
    return out


def test_train_autoencoder_writes_checkpoints_samples_and_plot(vae_run):
    assert [d.name for d in checkpoint_dirs(vae_run)] == ["step_0000002", "step_0000004"]
    assert (vae_run / "loss.png").stat().st_size > 1000
    assert sorted(p.name for p in (vae_run / "samples").glob("*.png")) == ["step_0000002.png", "step_0000004.png"]
    assert json.loads((vae_run / "source.json").read_text()) == {"worlds": ["shapes", "pans"]}
    steps = [json.loads(x)["step"] for x in (vae_run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]
    assert load_autoencoder(vae_run).config.kind == "causal3d"


def test_train_autoencoder_resume_equals_a_straight_run(tmp_path, vae_run):
    resumed = tmp_path / "resumed"
    assert (
        run_cli(
            "train-autoencoder",
            "--preset",
            "tiny",
            "--steps",
            2,
            "--checkpoint-every",
            2,
            "--worlds",
            "shapes,pans",
            "--out",
            resumed,
        )
        == 0
    )
    # Resuming keeps the run's own source even when another is named.
    assert (
        run_cli(
            "train-autoencoder", "--preset", "tiny", "--steps", 4, "--resume", "--worlds", "fashion", "--out", resumed
        )
        == 0
    )
    for name in ("model.safetensors", "training/raw.safetensors"):
        a = load_file(str(checkpoint_dirs(vae_run)[-1] / name))
        b = load_file(str(checkpoint_dirs(resumed)[-1] / name))
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-7, msg=key)


def test_bad_arguments_are_one_line_errors(tmp_path, capsys):
    assert run_cli("train-autoencoder", "--preset", "tiny", "--worlds", "kinetics", "--out", tmp_path / "x") == 2
    assert "allowed worlds" in capsys.readouterr().err
    assert run_cli("train-autoencoder", "--preset", "tiny", "--steps", 0, "--out", tmp_path / "x") == 2
    assert "--steps must be positive" in capsys.readouterr().err
    assert run_cli("train-autoencoder", "--preset", "tiny", "--corpus", tmp_path / "none", "--out", tmp_path / "x") == 2
    assert "is not a folder" in capsys.readouterr().err


def test_export_autoencoder_writes_a_loadable_folder(tmp_path, vae_run):
    out = tmp_path / "exported"
    assert run_cli("export-autoencoder", vae_run, "--out", out, "--dtype", "bfloat16") == 0
    assert load_file(str(out / "model.safetensors"))["latent_scale"].dtype == torch.bfloat16
    assert load_autoencoder(out).config == load_autoencoder(vae_run).config


def test_cache_latents_then_train_and_export_a_latent_model(tmp_path, vae_run, capsys):
    parser = argparse.ArgumentParser()
    autoencoder_training.add_cache_latents_parser(parser.add_subparsers())
    latents = tmp_path / "latents"
    args = parser.parse_args(
        [
            "cache-latents",
            "--autoencoder",
            str(vae_run),
            "--world",
            "shapes",
            "--n",
            "5",
            "--shard-size",
            "2",
            "--max-frames",
            "9",
            "--out",
            str(latents),
        ]
    )
    assert args.func(args) == 0
    assert "wrote 5 latents in 3 shards" in capsys.readouterr().out
    assert args.func(args) == 0  # a finished cache is kept as it is
    assert "already complete" in capsys.readouterr().out

    run = tmp_path / "run"
    assert (
        run_cli(
            "train",
            "--preset",
            "tiny",
            "--latents",
            latents,
            "--steps",
            2,
            "--checkpoint-every",
            2,
            "--sample-every",
            2,
            "--tokens-per-step",
            64,
            "--out",
            run,
        )
        == 0
    )
    config = load_model_folder(run).model_config
    assert config.autoencoder == load_autoencoder(vae_run).config and config.patch_size == (1, 2, 2)
    assert config.latent_channels == 8
    assert list((run / "samples").glob("*.mp4"))
    exported = tmp_path / "exported"
    assert run_cli("export", run, "--out", exported) == 0
    assert (exported / "autoencoder" / "model.safetensors").is_file()
    from cinecube.pipeline import Pipeline

    pipe = Pipeline.from_pretrained(exported)
    assert pipe("a red circle moving right", frames=5, height=32, width=32, steps=2, progress=False).frames.shape == (
        5,
        32,
        32,
        3,
    )
