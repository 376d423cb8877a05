"""The bundled default model ships inside the package and is what `generate` uses without --model."""

import json

import numpy as np

from cinecube.cli import main
from cinecube.pipeline import Pipeline, default_model_dir
from cinecube.video_io import read_video


def test_bundled_model_is_small_and_self_describing():
    folder = default_model_dir()
    weights = folder / "model.safetensors"
    assert weights.is_file() and weights.stat().st_size < 25 * 2**20
    config = json.loads((folder / "config.json").read_text())
    assert config["model"]["patch_size"] and config["step"] > 0


def test_generate_uses_the_bundled_model(tmp_path, capsys):
    out = tmp_path / "default.mp4"
    code = main(
        [
            "generate",
            "a red circle moving right on a black background",
            "--frames",
            "4",
            "--height",
            "32",
            "--width",
            "32",
            "--steps",
            "3",
            "--seed",
            "0",
            "-o",
            str(out),
        ]
    )
    assert code == 0, capsys.readouterr().err
    frames, fps = read_video(out)
    assert frames.shape == (4, 32, 32, 3) and fps == 8


def test_bundled_model_output_is_not_noise():
    """A trained model's output is smooth compared with noise: neighbouring pixels agree."""
    pipe = Pipeline.from_pretrained()
    video = pipe(
        "a blue square on a white background", frames=4, height=32, width=32, steps=10, seed=1, progress=False
    ).frames.astype(float)
    neighbour_gap = np.abs(np.diff(video, axis=2)).mean()
    noise = np.random.default_rng(0).uniform(0, 255, video.shape)
    assert neighbour_gap < 0.5 * np.abs(np.diff(noise, axis=2)).mean()
