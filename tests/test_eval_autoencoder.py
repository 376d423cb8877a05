"""Tests of the autoencoder evaluation (PSNR/SSIM, images, JSON) and the reconstruct command."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cinecube import cli
from cinecube.autoencoder import (
    Autoencoder,
    CausalVideoAutoencoder,
    PixelAutoencoder,
    load_autoencoder,
    save_autoencoder,
)
from cinecube.config import AUTOENCODER_PRESETS, AutoencoderConfig
from cinecube.errors import CheckpointError, InvalidRequestError
from cinecube.evaluate.autoencoder import evaluate_autoencoder, pad_to_grid, psnr, side_by_side, ssim
from cinecube.pipeline import default_autoencoder_dir
from cinecube.video_io import read_video, video_info, write_video


def _textured(frames: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth moving texture (T, H, W, 3) uint8: compresses well in mp4, has real structure."""
    y, x = np.mgrid[:height, :width].astype(np.float32)
    video = np.empty((frames, height, width, 3), dtype=np.uint8)
    for t in range(frames):
        for c in range(3):
            video[t, ..., c] = 127 + 100 * np.sin((x + 2 * t) / (5 + c) + seed) * np.cos(y / (7 + 2 * c))
    return video


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("clips") / "texture.mp4"
    write_video(path, _textured(11, 44, 60), fps=12)
    return path


@pytest.fixture(scope="module")
def tiny_autoencoder():
    torch.manual_seed(0)
    return CausalVideoAutoencoder(AUTOENCODER_PRESETS["tiny"]).eval()


class NoisyAutoencoder(Autoencoder):
    """The identity plus Gaussian noise of a given standard deviation (in [-1, 1] units)."""

    def __init__(self, sigma: float):
        super().__init__()
        self.config = AutoencoderConfig()
        self.sigma = sigma

    def encode(self, video):
        return video

    def decode(self, latent):
        generator = torch.Generator().manual_seed(0)
        return (latent + self.sigma * torch.randn(latent.shape, generator=generator)).clamp(-1, 1)


def test_identity_is_perfect_and_report_has_its_fields(clip, tmp_path):
    report = evaluate_autoencoder(PixelAutoencoder(), {"texture": clip}, max_frames=9, out_dir=tmp_path)
    (row,) = report["clips"]
    assert row["ssim"] > 0.999 and row["psnr"] == report["psnr_cap"]
    assert (row["name"], row["height"], row["width"], row["frames"]) == ("texture", 44, 60, 9)
    assert report["compression"] == "1x1x1" and report["kind"] == "pixel"
    assert report["mean_psnr"] == row["psnr"] and report["mean_ssim"] == row["ssim"]
    image = read_video(tmp_path / "texture.png")[0][0]
    assert image.shape[1] > 2 * 60 and image.shape[0] > 3 * 44  # 3 rows of original | reconstruction
    json.dumps(report)  # JSON-able as is


def test_noise_lowers_psnr_and_ssim(clip):
    light = evaluate_autoencoder(NoisyAutoencoder(0.02), {"c": clip}, max_frames=5)
    heavy = evaluate_autoencoder(NoisyAutoencoder(0.2), {"c": clip}, max_frames=5)
    assert 30 < light["mean_psnr"] < 100
    assert heavy["mean_psnr"] < light["mean_psnr"] - 10
    assert heavy["mean_ssim"] < light["mean_ssim"] < 0.999


def test_untrained_causal_autoencoder_on_its_grid(clip, tiny_autoencoder):
    # 11 frames -> 9 (1 + 4k); 44x60 -> 40x56 (multiples of 8).
    report = evaluate_autoencoder(tiny_autoencoder, {"texture": clip}, max_frames=33)
    (row,) = report["clips"]
    assert (row["frames"], row["height"], row["width"]) == (9, 40, 56)
    assert row["source"] == {"frames": 11, "height": 44, "width": 60}
    assert report["compression"] == "4x8x8" and report["latent_channels"] == 8
    assert row["psnr"] < 30 and row["ssim"] < 0.9  # untrained: far from the identity
    # Tiles smaller than the frame take the tiled path and give the same-sized result.
    tiled = evaluate_autoencoder(tiny_autoencoder, {"texture": clip}, max_frames=5, tile_size=32)
    assert (tiled["clips"][0]["height"], tiled["clips"][0]["width"]) == (40, 56)
    # max_side shrinks first, then rounds to the grid: 44x60 -> 23x32 -> 16x32.
    small = evaluate_autoencoder(tiny_autoencoder, {"texture": clip}, max_frames=5, max_side=32)
    assert (small["clips"][0]["height"], small["clips"][0]["width"]) == (16, 32)


def test_clip_smaller_than_a_latent_cell_is_refused(tmp_path, tiny_autoencoder):
    path = tmp_path / "small.mp4"
    write_video(path, _textured(5, 6, 40), fps=8)
    good = tmp_path / "good.mp4"
    write_video(good, _textured(5, 16, 16), fps=8)
    with pytest.raises(InvalidRequestError, match="smaller than one latent cell") as info:
        evaluate_autoencoder(tiny_autoencoder, {"good": good, "small": path}, out_dir=tmp_path / "images")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "images").exists()  # nothing written half-way
    with pytest.raises(InvalidRequestError, match="latent cell"):
        pad_to_grid(_textured(1, 6, 40), tiny_autoencoder)


def test_metrics_and_side_by_side():
    a = _textured(3, 32, 32)
    assert psnr(a, a) == 100.0 and ssim(a, a) == pytest.approx(1.0)
    b = a.copy()
    b[0, 0, 0, 0] ^= 1
    assert psnr(a, b) == pytest.approx(10 * np.log10(255**2 * a.size))  # one value off by 1
    sheet = side_by_side(a, a, count=3)
    gap = 2
    assert sheet.shape == (3 * 32 + 2 * gap, 2 * 32 + gap, 3)
    assert np.array_equal(sheet[:32, :32], a[0]) and np.array_equal(sheet[:32, 32 + gap :], a[0])


def test_corrupt_checkpoint_is_one_line_checkpoint_error(tmp_path, tiny_autoencoder, capsys):
    folder = save_autoencoder(tmp_path / "ae", tiny_autoencoder)
    assert load_autoencoder(folder).config == tiny_autoencoder.config
    (folder / "model.safetensors").write_bytes(b"not safetensors at all")
    with pytest.raises(CheckpointError) as info:
        load_autoencoder(folder)
    assert "\n" not in str(info.value)
    out = tmp_path / "ae.json"
    code = cli.main(["eval", "autoencoder", "--autoencoder", str(folder), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error:") and len(err.splitlines()) == 1
    assert not out.exists()


def test_eval_command_writes_json_and_images(tmp_path, capsys, tiny_run):
    from cinecube.data.assets import real_clip_paths
    from cinecube.errors import CinecubeError

    try:
        real_clip_paths(["carphone"])
    except CinecubeError:
        pytest.skip("offline real clips not installed")
    out = tmp_path / "ae.json"
    # A pixel-space model's autoencoder is the identity.
    code = cli.main(
        [
            "eval",
            "autoencoder",
            "--clips",
            "carphone",
            "--max-frames",
            "3",
            "--out",
            str(out),
            "--images",
            str(tmp_path / "images"),
            "--model",
            str(tiny_run),
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0 and "identity" in printed
    report = json.loads(out.read_text())
    assert report["clips"][0]["name"] == "carphone"
    assert (report["clips"][0]["height"], report["clips"][0]["width"]) == (144, 176)  # native size
    assert report["mean_ssim"] > 0.999
    assert (tmp_path / "images" / "carphone.png").exists()
    # By default: the bundled model's autoencoder (measured on carphone: 25.8 dB, SSIM 0.84 at 4x8x8).
    assert (default_autoencoder_dir() / "model.safetensors").is_file()
    assert (
        cli.main(["eval", "autoencoder", "--clips", "carphone", "--max-frames", "5", "--out", str(out), "--force"]) == 0
    )
    assert "causal3d autoencoder of the bundled model" in capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report["compression"] == "4x8x8" and report["clips"][0]["frames"] == 5
    assert 23 < report["mean_psnr"] < 40 and report["mean_ssim"] > 0.75


def test_reconstruct_keeps_size_and_frame_rate(tmp_path, tiny_autoencoder, capsys, tiny_run):
    source = tmp_path / "odd.mp4"
    write_video(source, _textured(7, 37, 53), fps=12)  # odd sizes, 7 frames
    folder = save_autoencoder(tmp_path / "ae", tiny_autoencoder)
    cases = [
        (tmp_path / "same.mp4", ["--model", str(tiny_run)]),  # pixel space: identity
        (tmp_path / "tiny.mp4", ["--autoencoder", str(folder)]),
        (tmp_path / "bundled.mp4", []),
    ]  # the bundled model's
    for output, extra in cases:
        assert cli.main(["reconstruct", str(source), "-o", str(output), *extra]) == 0
        info = video_info(output)
        assert (info["frames"], info["height"], info["width"]) == (7, 37, 53)
        assert info["fps"] == pytest.approx(12)
    # The identity round trip only loses what mp4 encoding loses.
    original, _ = read_video(source)
    again, _ = read_video(tmp_path / "same.mp4")
    assert psnr(original, again) > 35
    capsys.readouterr()


def test_reconstruct_refuses_bad_input_and_writes_nothing(tmp_path, capsys):
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "junk.avi").write_text("not a video")
    write_video(tmp_path / "small.mp4", _textured(1, 4, 4), fps=8)
    output = tmp_path / "out.mp4"
    for name, extra in (("empty.mp4", []), ("junk.avi", []), ("missing.mp4", [])):
        assert cli.main(["reconstruct", str(tmp_path / name), "-o", str(output), *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and len(err.splitlines()) == 1
    ae = save_autoencoder(tmp_path / "ae", CausalVideoAutoencoder(AUTOENCODER_PRESETS["tiny"]))
    assert cli.main(["reconstruct", str(tmp_path / "small.mp4"), "-o", str(output), "--autoencoder", str(ae)]) == 2
    assert "latent cell" in capsys.readouterr().err
    assert not output.exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
