import dataclasses
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from cinecube.autoencoder import (
    CausalVideoAutoencoder,
    PixelAutoencoder,
    build_autoencoder,
    crop_to_layout,
    fit_linear_path,
    frames_to_tensor,
    load_autoencoder,
    save_autoencoder,
    tensor_to_frames,
)
from cinecube.autoencoder.layers import depth_to_space, fold_blocks, space_to_depth, unfold_blocks
from cinecube.autoencoder.tiling import tiled
from cinecube.config import AUTOENCODER_PRESETS, AutoencoderConfig, ModelConfig
from cinecube.data.shapes import ShapesWorld
from cinecube.errors import CheckpointError, InvalidRequestError
from cinecube.model_folder import checkpoint_dirs, save_model_folder
from cinecube.train.autoencoder_loop import AUTOENCODER_TRAIN_PRESETS, train_autoencoder

TINY = AUTOENCODER_PRESETS["tiny"]  # 4x temporal, 8x spatial, 8 latent channels
# The same compression through a 2x2 space-to-depth stem and one level fewer (like "small").
TINY_PATCHED = dataclasses.replace(TINY, patch_size=2, channel_multipliers=(1, 2, 4))


def tiny_model(seed: int = 0, config: AutoencoderConfig = TINY) -> CausalVideoAutoencoder:
    torch.manual_seed(seed)
    return CausalVideoAutoencoder(config).eval()


# And with the linear path beside the networks (like "small").
TINY_LINEAR = dataclasses.replace(TINY_PATCHED, linear_path=True)


# The linear code alone (like the bundled "linear" preset).
LINEAR_ONLY = dataclasses.replace(TINY, linear_path=True, networks=False)


@pytest.fixture(
    scope="module",
    params=[TINY, TINY_PATCHED, TINY_LINEAR, LINEAR_ONLY],
    ids=["full-resolution-stem", "patch-stem", "linear-path", "linear-only"],
)
def model(request):
    return tiny_model(config=request.param)


def test_fold_blocks_follows_the_causal_layout_and_unfolds_exactly():
    video = torch.randn(1, 3, 9, 16, 24, generator=torch.Generator().manual_seed(0))
    blocks = fold_blocks(video, 4, 8, video_start=True)  # (1, 768, 3, 2, 3)
    assert blocks.shape == (1, 3 * 4 * 8 * 8, 3, 2, 3)
    first = blocks[0, :, 0, 1, 2].view(3, 4, 8, 8)  # latent frame 0, cell (1, 2)
    assert torch.equal(first, video[0, :, :1, 8:16, 16:24].expand(-1, 4, -1, -1))  # frame 0, four times
    second = blocks[0, :, 1, 0, 0].view(3, 4, 8, 8)
    assert torch.equal(second, video[0, :, 1:5, :8, :8])
    assert torch.equal(unfold_blocks(blocks, 4, 8, video_start=True), video)
    later = fold_blocks(video[:, :, 1:], 4, 8, video_start=False)  # a later chunk: whole groups
    assert torch.equal(later, blocks[:, :, 1:])
    assert torch.equal(unfold_blocks(later, 4, 8, video_start=False), video[:, :, 1:])


@torch.no_grad()
def test_linear_path_is_fitted_in_closed_form_on_its_training_clips():
    clips = [shapes_video(9, 32, 48, index=i) for i in range(12)]
    model = tiny_model(config=TINY_LINEAR)
    with pytest.raises(ValueError, match="no linear path"):
        fit_linear_path(tiny_model(), clips)
    fit = fit_linear_path(model, clips)
    assert fit["blocks"] == 12 * 3 * 4 * 6 and 0.5 < fit["explained"] <= 1.0
    # The decoder's 3x3 least-squares fit beats the PCA's own per-block reconstruction.
    assert fit["mse"] < fit["pca_mse"]
    # With the networks silenced, a round trip (unclamped) is exactly that fitted linear code.
    for conv in (model.encoder.conv_out, model.decoder.conv_out):
        conv.weight.zero_()
    mse = np.mean(
        [(model.decoder(model.posterior(c).mean[None])[0] - c)[:, 1:].square().mean().item() for c in clips]
    )  # frame 0 counts 4x in the fit
    assert mse == pytest.approx(fit["mse"], rel=0.1)
    # The encoder is the PCA: a random orthonormal basis of the same size keeps less.
    blocks = torch.cat(
        [fold_blocks(c[None].double(), 4, 8, True).permute(0, 2, 3, 4, 1).reshape(-1, 768) for c in clips]
    )
    centred = blocks - blocks.mean(0)
    random_basis = torch.linalg.qr(torch.randn(768, 8, dtype=torch.float64))[0]
    random_error = (centred - centred @ random_basis @ random_basis.T).square().mean()
    assert fit["pca_mse"] < random_error


def test_space_to_depth_folds_pixel_blocks_into_channels_and_back():
    video = torch.arange(2 * 3 * 2 * 4 * 6, dtype=torch.float32).view(2, 3, 2, 4, 6)
    folded = space_to_depth(video, 2)  # (2, 12, 2, 2, 3)
    assert folded.shape == (2, 12, 2, 2, 3)
    # Channel c*4 + dy*2 + dx of cell (i, j) is pixel (2i + dy, 2j + dx) of channel c.
    assert folded[1, 2 * 4 + 1 * 2 + 0, 1, 1, 2] == video[1, 2, 1, 3, 4]
    assert torch.equal(depth_to_space(folded, 2), video)
    assert space_to_depth(video, 1) is video


def random_video(frames: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(3, frames, height, width, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def shapes_video(frames: int, height: int, width: int, index: int = 0) -> torch.Tensor:
    return frames_to_tensor(ShapesWorld(seed=0).sample_at(index, height, width, frames).video)


# ------------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("frames", [1, 5, 9, 17])
@torch.no_grad()
def test_encode_decode_shapes_on_non_square_frames(model, frames):
    video = random_video(frames, 24, 40)
    latent = model.encode(video)
    assert latent.shape == (8, 1 + (frames - 1) // 4, 3, 5)
    assert latent.shape[1] == model.latent_frames(frames) and model.pixel_frames(latent.shape[1]) == frames
    decoded = model.decode(latent)
    assert decoded.shape == (3, frames, 24, 40)
    assert decoded.min() >= -1 and decoded.max() <= 1


@torch.no_grad()
def test_batches_give_the_same_as_single_videos(model):
    videos = torch.stack([random_video(5, 16, 24, seed=s) for s in (1, 2)])  # (2, 3, 5, 16, 24)
    latents = model.encode(videos)
    assert latents.shape == (2, 8, 2, 2, 3)
    torch.testing.assert_close(latents[1], model.encode(videos[1]), rtol=1e-5, atol=1e-5)
    assert model.decode(latents).shape == (2, 3, 5, 16, 24)


# ------------------------------------------------------------------------------- causality


@torch.no_grad()
def test_encoder_is_causal(model):
    video = random_video(17, 32, 32)
    changed = video.clone()
    changed[:, 6] = -changed[:, 6]  # frame 6 belongs to latent frame 2 (frames 5..8)
    a, b = model.encode(video, chunk=None), model.encode(changed, chunk=None)
    assert torch.equal(a[:, :2], b[:, :2])
    # Latent frame 2 moves, and with networks (whose convolutions look back) every later one;
    # a linear code alone is a block code: its later frames stay put.
    later = None if model.config.networks else 3
    assert (a[:, 2:later] - b[:, 2:later]).abs().amax(dim=(0, 2, 3)).min() > 1e-4
    if not model.config.networks:
        assert torch.equal(a[:, 3:], b[:, 3:])


@torch.no_grad()
def test_decoder_is_causal(model):
    latent = torch.randn(8, 5, 4, 4, generator=torch.Generator().manual_seed(0))
    changed = latent.clone()
    changed[:, 2] += 1.0  # latent frame 2 decodes to pixel frames 5..8
    a, b = model.decode(latent, chunk=None), model.decode(changed, chunk=None)
    assert torch.equal(a[:, :5], b[:, :5])
    later = None if model.config.networks else 9  # a linear code alone: frames 5..8 only
    assert (a[:, 5:later] - b[:, 5:later]).abs().amax(dim=(0, 2, 3)).min() > 1e-4
    if not model.config.networks:
        assert torch.equal(a[:, 9:], b[:, 9:])


@torch.no_grad()
def test_an_image_and_the_first_frame_of_a_video_share_a_latent(model):
    video = shapes_video(9, 32, 48)
    image_latent = model.encode(video[:, :1])
    assert image_latent.shape == (8, 1, 4, 6)
    torch.testing.assert_close(image_latent, model.encode(video)[:, :1], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(
        model.decode(image_latent)[:, 0], model.decode(model.encode(video))[:, 0], rtol=1e-5, atol=1e-5
    )


# ------------------------------------------------------------------------------- chunks and tiles


@torch.no_grad()
def test_chunked_equals_one_shot(model):
    # Exact up to float rounding (measured max |diff| ~5e-6 in fp32): the causal cache hands each
    # convolution exactly the frames it would have seen in one pass.
    video = random_video(17, 24, 32)
    whole = model.encode(video, chunk=None)
    decoded = model.decode(whole, chunk=None)
    for chunk in (1, 2, 4):
        torch.testing.assert_close(model.encode(video, chunk=chunk), whole, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(model.decode(whole, chunk=chunk), decoded, rtol=1e-5, atol=1e-5)


def test_tile_blending_is_exact_for_local_maps():
    # Maps with no spatial context (8x8 pooling, 8x nearest upsampling) must come out of the
    # tiler unchanged: any error here is the blending, not the network.
    video = torch.randn(1, 3, 5, 64, 96)
    pool = lambda x: F.avg_pool3d(x, (1, 8, 8))  # noqa: E731
    torch.testing.assert_close(tiled(pool, video, 32, 16, up=1, down=8), pool(video))
    latent = torch.randn(1, 8, 2, 8, 12)
    upsample = lambda z: F.interpolate(z, scale_factor=(1, 8, 8))  # noqa: E731
    torch.testing.assert_close(tiled(upsample, latent, 4, 2, up=8, down=1), upsample(latent))


@torch.no_grad()
def test_tiled_is_close_to_one_shot(model):
    # Tiling is approximate: each tile sees zero padding and its own per-frame GroupNorm
    # statistics at its borders, and an untrained network amplifies both. Measured on this
    # tiny random network, 128-pixel tiles overlapping by 64 on 128x192 noise frames give a
    # relative L2 error of 8% (encode) and 19% (decode), 17% and 32% without overlap. On a
    # shapes clip (flat background: tile statistics differ most) it is 24% and 51%. With the
    # norms removed the same tiles give ~2% and ~0.2%, so GroupNorm is the main cause.
    def relative_error(a, b):
        return ((a - b).norm() / b.norm()).item()

    video = random_video(5, 128, 192)
    latent = model.encode(video)
    decoded = model.decode(latent)
    enc = relative_error(model.encode(video, tile_size=128, tile_overlap=64), latent)
    dec = relative_error(model.decode(latent, tile_size=128, tile_overlap=64), decoded)
    assert enc < 0.15 and dec < 0.3
    if model.config.networks:
        assert enc < relative_error(model.encode(video, tile_size=128, tile_overlap=0), latent)
    else:
        # A linear code alone encodes each block on its own: tiling is exact. Its decoder sees a
        # 3x3 cell neighbourhood, so only the cells at tile borders (edges repeated) differ.
        assert enc < 1e-5 and dec < 0.05
    assert dec < relative_error(model.decode(latent, tile_size=128, tile_overlap=0), decoded)


# ------------------------------------------------------------------------------- latent statistics


@torch.no_grad()
def test_latent_statistics_normalise_and_round_trip():
    model = tiny_model()
    videos = [shapes_video(9, 32, 32, index=i) for i in range(3)]
    before = [model.decode(model.encode(v)) for v in videos]
    raw = torch.cat([model.encode(v).flatten(1) for v in videos], dim=1)  # (C, N), identity stats
    assert raw.mean(dim=1).abs().max() > 0.05 or (raw.std(dim=1) - 1).abs().max() > 0.05

    shift, scale = model.estimate_latent_stats(videos)
    assert {"latent_shift", "latent_scale"} <= set(model.state_dict())
    latents = torch.cat([model.encode(v).flatten(1) for v in videos], dim=1)
    assert latents.mean(dim=1).abs().max() < 1e-3
    torch.testing.assert_close(latents.std(dim=1, unbiased=False), torch.ones(8), rtol=0, atol=1e-3)
    for video, reference in zip(videos, before):
        torch.testing.assert_close(model.decode(model.encode(video)), reference, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------- checkpoints


@torch.no_grad()
def test_checkpoint_round_trip_gives_identical_outputs(tmp_path):
    model = tiny_model(seed=3)
    model.estimate_latent_stats([shapes_video(5, 32, 32)])
    save_autoencoder(tmp_path / "vae", model)
    loaded = load_autoencoder(tmp_path / "vae")
    assert loaded.config == TINY and not loaded.training
    video = shapes_video(9, 32, 40, index=1)
    latent = model.encode(video)
    assert torch.equal(loaded.encode(video), latent)
    assert torch.equal(loaded.decode(latent), model.decode(latent))
    assert torch.equal(loaded.latent_scale, model.latent_scale)


def test_corrupt_or_foreign_checkpoints_are_refused(tmp_path):
    folder = save_autoencoder(tmp_path / "vae", tiny_model())
    with pytest.raises(CheckpointError, match="does not exist"):
        load_autoencoder(tmp_path / "missing")

    (folder / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_autoencoder(folder)

    folder = save_autoencoder(tmp_path / "vae2", tiny_model())
    (folder / "config.json").write_text('{"format": "cinecube-checkpoint/1", "model": ')
    with pytest.raises(CheckpointError, match="unreadable"):
        load_autoencoder(folder)

    # A checkpoint whose config promises another width than its weights have.
    folder = save_autoencoder(tmp_path / "vae3", tiny_model())
    config = json.loads((folder / "config.json").read_text())
    config["model"]["autoencoder"]["base_channels"] = 16
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="shape"):
        load_autoencoder(folder)

    # A pixel-space (transformer) checkpoint is not an autoencoder checkpoint.
    save_model_folder(tmp_path / "pixel", ModelConfig(), torch.nn.Linear(2, 2))
    with pytest.raises(CheckpointError, match="no causal3d autoencoder"):
        load_autoencoder(tmp_path / "pixel")


# ------------------------------------------------------------------------------- bad input


def test_bad_inputs_get_one_line_errors(model):
    cases = [
        (lambda: model.encode(random_video(6, 16, 16)), r"6 frames; .*1 \+ 4k.*crop it to 5 or pad it to 9"),
        (lambda: model.encode(random_video(1, 4, 16)), "height 4 is not allowed.*multiples of 8"),
        (lambda: model.encode(random_video(5, 16, 20)), "width 20"),
        (lambda: model.encode(torch.zeros(4, 5, 16, 16)), r"expected \(3, T, H, W\)"),
        (lambda: model.decode(torch.zeros(3, 2, 2, 2)), r"latent has shape \(3, 2, 2, 2\)"),
        (lambda: model.encode(random_video(1, 16, 16), tile_size=20), "tile_size 20"),
        (lambda: model.decode(torch.zeros(8, 2, 2, 2), chunk=0), "chunk 0"),
    ]
    for call, pattern in cases:
        with pytest.raises(InvalidRequestError, match=pattern) as error:
            call()
        assert "\n" not in str(error.value)


def test_inconsistent_configs_are_refused():
    with pytest.raises(ValueError, match="spatial_factor 16"):
        CausalVideoAutoencoder(dataclasses.replace(TINY, spatial_factor=16))
    with pytest.raises(ValueError, match="temporal_factor 3"):
        CausalVideoAutoencoder(dataclasses.replace(TINY, temporal_factor=3))
    with pytest.raises(ValueError, match="norm_groups 3"):
        CausalVideoAutoencoder(dataclasses.replace(TINY, norm_groups=3))
    with pytest.raises(ValueError, match="patch_size 2 and 4 channel multipliers"):
        CausalVideoAutoencoder(dataclasses.replace(TINY, patch_size=2))  # would be 16x
    with pytest.raises(ValueError, match="temporal_factor 8"):
        CausalVideoAutoencoder(dataclasses.replace(TINY_PATCHED, temporal_factor=8))  # only 2 halvings
    with pytest.raises(ValueError, match="needs the linear path"):
        CausalVideoAutoencoder(dataclasses.replace(TINY, networks=False))


def test_training_crops_clips_to_the_causal_layout():
    frames = np.zeros((7, 35, 33, 3), dtype=np.uint8)
    assert crop_to_layout(frames, 4, 8).shape == (5, 32, 32, 3)
    with pytest.raises(Exception, match="smaller than one latent cell"):
        crop_to_layout(np.zeros((5, 6, 32, 3), dtype=np.uint8), 4, 8)


# ------------------------------------------------------------------------------- training


def fixed_clips(count: int = 2):
    world = ShapesWorld(seed=0)
    clips = [world.sample_at(i, 32, 32, 5).video for i in range(count)]
    return lambda step: clips


def test_smoke_training_lowers_the_reconstruction_loss(tmp_path):
    train = AUTOENCODER_TRAIN_PRESETS["tiny"]
    source = fixed_clips()
    train_autoencoder(TINY, train, tmp_path, videos=source, progress=False)
    l1 = [json.loads(line)["l1"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(l1) == 20
    assert np.mean(l1[-3:]) < 0.6 * np.mean(l1[:3])  # measured: ~0.65 -> ~0.19

    # The saved (EMA) network reconstructs the clips better than the untrained one.
    trained = load_autoencoder(tmp_path)
    assert [d.name for d in checkpoint_dirs(tmp_path)] == ["step_0000010", "step_0000020"]
    clip = frames_to_tensor(source(0)[0])
    with torch.no_grad():

        def error(m):
            return (m.decode(m.encode(clip)) - clip).abs().mean().item()

        assert error(trained) < error(tiny_model(seed=train.seed))


@pytest.mark.parametrize("config", [TINY, TINY_LINEAR], ids=["networks-only", "linear-path"])
def test_resume_gives_exactly_the_same_weights(tmp_path, config):
    train = dataclasses.replace(AUTOENCODER_TRAIN_PRESETS["tiny"], steps=4, checkpoint_every=2)
    source = fixed_clips(1)
    train_autoencoder(config, train, tmp_path / "straight", videos=source, progress=False)
    train_autoencoder(config, train, tmp_path / "resumed", videos=source, progress=False, stop_after=2)
    train_autoencoder(config, train, tmp_path / "resumed", videos=source, progress=False, resume=True)
    for name in ("model.safetensors", "training/raw.safetensors"):
        a = load_file(str(checkpoint_dirs(tmp_path / "straight")[-1] / name))
        b = load_file(str(checkpoint_dirs(tmp_path / "resumed")[-1] / name))
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-7, msg=key)
    steps = [json.loads(x)["step"] for x in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]


def test_non_finite_loss_skips_the_step_like_the_transformer_loop(tmp_path, monkeypatch, capsys):
    # One rule for both training loops (train/nonfinite.py): a skipped step counts and leaves
    # the weights untouched; five in a row stop the run with NonFiniteLossError.
    from cinecube.train import autoencoder_loop
    from cinecube.train.nonfinite import NonFiniteLossError

    real = autoencoder_loop.autoencoder_losses
    calls = {"n": 0}

    def nan_at_step_2(*args, **kwargs):
        terms = real(*args, **kwargs)
        calls["n"] += 1
        return {**terms, "loss": terms["loss"] * float("nan")} if calls["n"] == 2 else terms

    monkeypatch.setattr(autoencoder_loop, "autoencoder_losses", nan_at_step_2)
    train = dataclasses.replace(AUTOENCODER_TRAIN_PRESETS["tiny"], steps=3, checkpoint_every=1, videos_per_step=1)
    result = train_autoencoder(TINY, train, tmp_path / "run", videos=fixed_clips(1), progress=False)
    assert result.step == 3 and "step 1: non-finite loss" in capsys.readouterr().err
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r.get("skipped", False) for r in records] == [False, True, False]
    step1, step2 = (load_file(str(d / "training" / "raw.safetensors")) for d in checkpoint_dirs(tmp_path / "run")[:2])
    assert all(torch.equal(step1[k], step2[k]) for k in step1)  # the skipped step changed nothing

    monkeypatch.setattr(
        autoencoder_loop,
        "autoencoder_losses",
        lambda *a, **k: {**real(*a, **k), "loss": torch.tensor(float("inf"), requires_grad=True)},
    )
    with pytest.raises(NonFiniteLossError, match="5 non-finite"):
        train_autoencoder(
            TINY, dataclasses.replace(train, steps=8), tmp_path / "bad", videos=fixed_clips(1), progress=False
        )


def test_a_linear_code_alone_is_fitted_with_zero_steps_and_loads_back(tmp_path):
    train = dataclasses.replace(
        AUTOENCODER_TRAIN_PRESETS["linear"], steps=0, linear_fit_steps=2, videos_per_step=2, stats_steps=1
    )
    source = fixed_clips()
    result = train_autoencoder(LINEAR_ONLY, train, tmp_path, videos=source, progress=False)
    assert result.step == 0 and [d.name for d in checkpoint_dirs(tmp_path)] == ["step_0000000"]
    fitted = load_autoencoder(tmp_path)
    assert fitted.num_parameters() < 200_000  # linear maps and a log-variance
    clip = frames_to_tensor(source(0)[0])
    with torch.no_grad():
        error = (fitted.decode(fitted.encode(clip)) - clip).abs().mean().item()
        unfitted = tiny_model(config=LINEAR_ONLY)
        unfitted.estimate_latent_stats([clip])
        assert error < 0.5 * (unfitted.decode(unfitted.encode(clip)) - clip).abs().mean().item()
    assert error < 0.15


def test_training_with_a_linear_path_starts_from_the_pca(tmp_path):
    # Step 0's network is the PCA of the clips (fitted before the first step): its error is far
    # below that of an unfitted network, and training goes on from there, not from scratch.
    train = dataclasses.replace(AUTOENCODER_TRAIN_PRESETS["tiny"], steps=4, checkpoint_every=4, linear_fit_steps=2)
    source = fixed_clips()
    train_autoencoder(TINY_LINEAR, train, tmp_path, videos=source, progress=False)
    l1 = [json.loads(line)["l1"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    clip = frames_to_tensor(source(0)[0])
    with torch.no_grad():
        unfitted = tiny_model(seed=train.seed, config=TINY_LINEAR)
        unfitted_l1 = (unfitted.decoder(unfitted.posterior(clip).mean[None])[0] - clip).abs().mean().item()
    assert l1[0] < 0.5 * unfitted_l1
    assert l1[0] < 0.3


# ------------------------------------------------------------------------------- pixel autoencoder


def test_pixel_autoencoder_still_works_and_old_configs_load():
    pixel = build_autoencoder(AutoencoderConfig())
    assert isinstance(pixel, PixelAutoencoder)
    video = random_video(3, 8, 8) * 1.5
    assert torch.equal(pixel.encode(video), video)
    assert pixel.decode(video).abs().max() <= 1
    assert pixel.valid_frames(3) and pixel.latent_frames(3) == 3
    frames = tensor_to_frames(pixel.decode(pixel.encode(frames_to_tensor(np.full((2, 8, 8, 3), 200, np.uint8)))))
    assert (frames == 200).all()

    # A config.json written before the causal autoencoder existed still loads, and equal.
    old = ModelConfig().to_dict()
    old["autoencoder"] = {"kind": "pixel", "latent_channels": 3, "temporal_factor": 1, "spatial_factor": 1}
    assert ModelConfig.from_dict(json.loads(json.dumps(old))) == ModelConfig()
    assert isinstance(build_autoencoder(TINY), CausalVideoAutoencoder)
    with pytest.raises(ValueError, match="'pixel', 'causal3d'"):
        build_autoencoder(AutoencoderConfig(kind="vqgan"))
