"""Prompting with images and videos: where condition clips land, what the helpers return,
what they refuse, and that training conditions its own videos the way generation does."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from cinecube.autoencoder import CausalVideoAutoencoder, fit_linear_path, frames_to_tensor
from cinecube.conditioning import (
    ConditionLatent,
    EditFrom,
    Keyframes,
    draw_condition_spans,
    encode_clip,
    extras_for,
    fit_frames,
)
from cinecube.config import AUTOENCODER_PRESETS, PRESETS, TRAIN_PRESETS
from cinecube.data.shapes import ShapesWorld
from cinecube.errors import InvalidRequestError
from cinecube.patches import pack
from cinecube.pipeline import Pipeline, generate_video

LINEAR = AUTOENCODER_PRESETS["linear"]  # the bundled kind of code: 4x temporal, 8x spatial
LATENT_MODEL = dataclasses.replace(PRESETS["tiny"], autoencoder=LINEAR, patch_size=(1, 2, 2))


@pytest.fixture(scope="module")
def clip():
    return ShapesWorld(seed=3).sample_at(0, 32, 32, 17).video  # (17, 32, 32, 3)


@pytest.fixture(scope="module")
def linear_code(clip):
    torch.manual_seed(0)
    model = CausalVideoAutoencoder(LINEAR)
    fit_linear_path(model, [frames_to_tensor(clip)])
    return model.eval()


def test_a_condition_at_any_frame_lands_where_its_frames_are(clip, linear_code):
    # A latent frame's time is the last pixel frame it covers / tf. A clip placed at frame f has
    # its latent i at f/4 + i; where it covers whole groups of the video, its latents there are
    # the video's own (this code has no memory across groups), at the same positions.
    video_latent = encode_clip(linear_code, clip)  # (C, 5, 4, 4)
    video = pack([video_latent], LATENT_MODEL.patch_size)
    per_frame = video.positions.view(5, -1, 3)  # (latent frame, tokens of a frame, 3)
    for at in range(17):
        for length in (1, 5, 9):
            if at + length > 17:
                continue
            condition = ConditionLatent(encode_clip(linear_code, clip[at : at + length]), at)
            packed = pack([video_latent], LATENT_MODEL.patch_size, extras=[extras_for([condition], LATENT_MODEL)])
            extra_positions = packed.positions[packed.is_extra].view(condition.latent.shape[1], -1, 3)
            for i in range(condition.latent.shape[1]):
                assert torch.allclose(extra_positions[i, :, 0], torch.full_like(extra_positions[i, :, 0], at / 4 + i))
                assert torch.equal(extra_positions[i, :, 1:], per_frame[0, :, 1:])
                if at % 4 == 0 and (i > 0 or at == 0):
                    slot = at // 4 + i
                    torch.testing.assert_close(condition.latent[:, i], video_latent[:, slot])
                    assert torch.equal(extra_positions[i], per_frame[slot])


def test_training_spans_cover_each_kind_inside_the_clip():
    rng = np.random.default_rng(0)
    for kind in ("first_frame", "last_frame", "first_last", "first_clip", "last_clip", "random_frames"):
        for frames in (1, 5, 13, 25):
            for _ in range(5):
                for start, length in draw_condition_spans(kind, frames, 4, rng):
                    assert start >= 0 and start + length <= frames and (length - 1) % 4 == 0
    assert draw_condition_spans("first_last", 13, 4, rng) == [(0, 1), (12, 1)]
    assert draw_condition_spans("first_clip", 5, 4, rng) == []  # too short to leave anything to make


@pytest.fixture(scope="module")
def pipe(tiny_run):
    return Pipeline.from_pretrained(tiny_run)


def _shapes(frames, height=32, width=32, seed=0):
    return ShapesWorld(seed=seed).sample_at(1, height, width, frames).video


OPTIONS = {"steps": 2, "progress": False}


def test_helpers_keep_the_given_frames_untouched(pipe):
    video = _shapes(6)
    animated = pipe.animate("a red circle moving right", video[0], frames=6, **OPTIONS)
    assert animated.frames.shape == (6, 32, 32, 3) and np.array_equal(animated.frames[0], video[0])
    forward = pipe.extend("a red circle moving right", video, frames=4, **OPTIONS)
    assert forward.frames.shape[0] == 10 and np.array_equal(forward.frames[:6], video)
    backward = pipe.extend("a red circle moving right", video, frames=4, direction="backward", **OPTIONS)
    assert backward.frames.shape[0] == 10 and np.array_equal(backward.frames[4:], video)
    looped = pipe.loop("a red circle moving right", frames=8, image=video[0], **OPTIONS)
    assert looped.frames.shape[0] == 8 and np.array_equal(looped.frames[0], video[0])
    other = _shapes(3, seed=5)
    joined = pipe.connect("a red circle moving right", video, other, frames=5, **OPTIONS)
    assert joined.frames.shape[0] == 6 + 5 + 3
    assert np.array_equal(joined.frames[:6], video) and np.array_equal(joined.frames[-3:], other)
    assert [v.info["mode"] for v in (animated, forward, backward, looped, joined)] == [
        "animate",
        "extend forward",
        "extend backward",
        "loop",
        "connect",
    ]


def test_edit_at_zero_is_the_input_and_at_one_is_plain_generation(pipe):
    video = _shapes(4)
    assert np.array_equal(pipe.edit("a blue circle", video, strength=0.0, **OPTIONS).frames, video)
    ignored = pipe.edit("a blue circle", video, strength=1.0, seed=7, **OPTIONS).frames
    plain = pipe("a blue circle", 4, 32, 32, seed=7, **OPTIONS).frames
    assert np.array_equal(ignored, plain)
    halfway = pipe.edit("a blue circle", video, strength=0.5, seed=7, **OPTIONS).frames
    assert not np.array_equal(halfway, plain) and not np.array_equal(halfway, video)


def test_conditions_reach_the_model(pipe):
    # The same seed with and without a first frame: the condition changes what is made.
    image = _shapes(1)
    plain = pipe("a red circle", 4, 32, 32, seed=1, **OPTIONS).frames
    conditioned = pipe("a red circle", 4, 32, 32, conditions=[Keyframes(image, 0)], seed=1, **OPTIONS).frames
    assert plain.shape == conditioned.shape and not np.array_equal(plain, conditioned)


@pytest.mark.parametrize(
    "call,needle",
    [
        (lambda p, v: p.edit("x", v, strength=1.5), "strength 1.5"),
        (lambda p, v: p.extend("x", v, frames=4, direction="sideways"), "direction 'sideways'"),
        (lambda p, v: p.extend("x", v, frames=0), "frames 0"),
        (lambda p, v: p("x", 4, 32, 32, conditions=[Keyframes(v, 2)]), "do not fit"),
        (lambda p, v: p("x", 4, 32, 32, conditions=[Keyframes(v[:, :16], 0)]), "fit them first"),
        (lambda p, v: p("x", 4, 32, 32, conditions=[EditFrom(v[:2], 0.5)]), "the video to edit is 2x32x32"),
        (lambda p, v: p.connect("x", v, v[:, :16], frames=3), "differ in size"),
        (lambda p, v: p.animate("x", np.zeros((32, 32), np.uint8)), "uint8 frames"),
    ],
)
def test_bad_conditions_are_one_line(pipe, call, needle):
    with pytest.raises(InvalidRequestError, match=needle):
        call(pipe, _shapes(4))


def test_a_face_in_an_input_is_refused_before_any_compute(pipe, monkeypatch):
    from cinecube.data.assets import photo_paths
    from cinecube.errors import CinecubeError
    from cinecube.safety.guard import SafetyBlockedError
    from cinecube.video_io import read_video

    try:
        astronaut = next(p for p in photo_paths() if p.name == "astronaut.png")
    except (CinecubeError, StopIteration):
        pytest.skip("the offline photos are not installed")
    face = fit_frames(read_video(astronaut)[0], 128, 128)

    def no_compute(*args, **kwargs):
        raise AssertionError("generated before reviewing the input")

    monkeypatch.setattr("cinecube.pipeline.generate_video", no_compute)
    with pytest.raises(SafetyBlockedError, match="an input is refused by frame review"):
        pipe.animate("a person", face[0], frames=4, **OPTIONS)


def test_fit_frames_covers_and_centre_crops():
    wide = np.zeros((1, 40, 80, 3), np.uint8)
    wide[:, :, 30:50] = 255  # a white band in the middle
    fitted = fit_frames(wide, 32, 32)
    assert fitted.shape == (1, 32, 32, 3) and fitted[0, 16, 16, 0] == 255 and fitted[0, 16, 0, 0] == 0


def test_training_conditions_come_from_the_video_itself(clip, linear_code):
    # A prefix is the video's own first latents (exact, causal code); a later clip is decoded and
    # encoded on its own, as a user's clip would be.
    from cinecube.train.loop import _draw_conditions

    latent = encode_clip(linear_code, clip)
    train = dataclasses.replace(TRAIN_PRESETS["tiny"], conditioning=(("first_clip", 1.0),))

    class Cached:
        pass

    item = Cached()
    item.latent = latent
    conditions = _draw_conditions(item, latent, linear_code, train, np.random.default_rng(0), "cpu")
    assert len(conditions) == 1 and conditions[0].frame == 0
    assert torch.equal(conditions[0].latent, latent[:, : conditions[0].latent.shape[1]])
    train = dataclasses.replace(train, conditioning=(("last_frame", 1.0),))
    (last,) = _draw_conditions(item, latent, linear_code, train, np.random.default_rng(0), "cpu")
    assert last.frame == 16 and last.latent.shape[1] == 1
    none = dataclasses.replace(train, conditioning=())
    assert _draw_conditions(item, latent, linear_code, none, np.random.default_rng(0), "cpu") == []


def test_a_latent_model_generates_with_conditions_at_any_frame(clip, linear_code, text_encoder):
    from cinecube.transformer import DiffusionTransformer

    torch.manual_seed(0)
    model = DiffusionTransformer(dataclasses.replace(LATENT_MODEL, text_max_tokens=32)).eval()
    for at in (0, 3, 8, 12):
        condition = ConditionLatent(encode_clip(linear_code, clip[at : at + 1]), at)
        video = generate_video(model, linear_code, text_encoder, "a red circle", 13, 32, 32, steps=2,
                               conditions=[condition])  # fmt: skip
        assert video.shape == (3, 13, 32, 32) and torch.isfinite(video).all()


def test_the_default_training_mix_is_valid_and_a_bad_one_is_refused():
    assert sum(share for _, share in TRAIN_PRESETS["small"].conditioning) == pytest.approx(0.25)
    with pytest.raises(InvalidRequestError, match="conditioning"):
        dataclasses.replace(TRAIN_PRESETS["tiny"], conditioning=(("sideways", 0.5),))
    with pytest.raises(InvalidRequestError, match="conditioning"):
        dataclasses.replace(TRAIN_PRESETS["tiny"], conditioning=(("first_frame", 0.8), ("last_frame", 0.4)))


def test_the_commands_write_what_the_helpers_make(tiny_run, tmp_path, capsys):
    from cinecube.cli import main
    from cinecube.video_io import read_video, write_video

    video, image = tmp_path / "in.mp4", tmp_path / "in.png"
    frames = _shapes(5)
    write_video(video, frames, fps=12)
    write_video(image, _shapes(1, 40, 56), fps=1)
    common = ["--model", tiny_run, "--steps", "2"]
    runs = [
        (["generate", "a red circle", "--image", image, "--frames", "4", *common], (4, 40, 56), "animate"),
        (
            ["generate", "a red circle", "--image", image, "--height", "32", "--width", "32", "--frames", "4", *common],
            (4, 32, 32),
            "animate",
        ),
        (
            ["generate", "a red circle", "--loop", "--frames", "6", "--height", "32", "--width", "32", *common],
            (6, 32, 32),
            "loop",
        ),
        (["extend", video, "a red circle", "--frames", "3", *common], (8, 32, 32), "extend forward"),
        (["connect", video, video, "a red circle", "--frames", "2", *common], (12, 32, 32), "connect"),
        (["edit", video, "a blue circle", "--strength", "0.5", *common], (5, 32, 32), "edit"),
    ]
    for i, (args, shape, mode) in enumerate(runs):
        out = tmp_path / f"out{i}.mp4"
        assert main([str(a) for a in [*args, "-o", out]]) == 0, capsys.readouterr().err
        printed = capsys.readouterr()
        made, fps = read_video(out)
        assert made.shape[:3] == shape and f"({mode})" in printed.out
        if args[0] in ("extend", "connect", "edit"):
            assert fps == pytest.approx(12)  # the input's rate


def test_outputs_made_from_inputs_record_them_in_their_manifest(tiny_run, tmp_path, capsys):
    from cinecube.cli import main
    from cinecube.safety.provenance import read_provenance

    first = tmp_path / "first.mp4"
    assert main([str(a) for a in ["generate", "a red circle", "--model", tiny_run, "--frames", "5", "--height", "32",
                                   "--width", "32", "--steps", "2", "-o", first]]) == 0  # fmt: skip
    longer = tmp_path / "longer.mp4"
    assert main([str(a) for a in ["extend", first, "a red circle", "--model", tiny_run, "--frames", "3",
                                   "--steps", "2", "-o", longer]]) == 0  # fmt: skip
    capsys.readouterr()
    report = read_provenance(longer)
    assert report.state == "Trusted"
    (parent,) = report.ingredients
    assert parent.relationship == "parentOf" and parent.title == "first.mp4" and parent.has_manifest
    assert parent.claims["prompt_sha256"] == read_provenance(first).claims["prompt_sha256"]


@pytest.mark.parametrize("sampler", ["euler", "heun"])
def test_progress_is_reported_after_every_sampling_step(pipe, sampler):
    seen = []
    pipe("a red circle", 4, 32, 32, steps=3, sampler=sampler, progress=False, on_step=lambda *a: seen.append(a))
    assert seen == [(1, 3), (2, 3), (3, 3)]
