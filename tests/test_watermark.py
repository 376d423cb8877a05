"""The invisible watermark: payload coding, embed -> detect, H.264, clean content, keys, PSNR."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cinecube.data.shapes import ShapesWorld
from cinecube.safety import watermark as wm
from cinecube.safety.watermark import (
    WatermarkPayload,
    detect_watermark,
    embed_watermark,
    payload_for,
)

PSNR_FLOOR_DB = 38.0  # the embedding targets 40 dB; clipping at 0/255 can cost a little


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * math.log10(255.0**2 / mse)


def _shapes(index: int, height: int, width: int, frames: int) -> np.ndarray:
    return ShapesWorld(seed=3).sample_at(index, height, width, frames).video


def _textured(frames: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """A moving, smoothly textured clip (like a photo pan)."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(height + frames * 2, width + frames * 2, 3))
    from scipy.ndimage import gaussian_filter

    base = gaussian_filter(base, sigma=(3, 3, 0))
    base = (base - base.min()) / (base.max() - base.min()) * 200 + 20
    return np.stack([base[2 * t : 2 * t + height, t : t + width] for t in range(frames)]).astype(np.uint8)


PAYLOAD = WatermarkPayload(model_id=0xBEEF, generation_id=0x123456)


def test_payload_bits_round_trip():
    bits = PAYLOAD.to_bits()
    assert bits.shape == (wm.PAYLOAD_BITS,) and wm.PAYLOAD_BITS >= 48
    assert set(np.unique(bits)) <= {0, 1}
    assert WatermarkPayload.from_bits(bits) == PAYLOAD
    assert PAYLOAD.as_hex() == "beef-123456"
    corrupted = bits.copy()
    corrupted[5] ^= 1
    with pytest.raises(ValueError, match="CRC"):
        WatermarkPayload.from_bits(corrupted)
    with pytest.raises(ValueError):
        WatermarkPayload(model_id=1 << 16, generation_id=0)


def test_payload_for_uses_checkpoint_hash():
    digest = "ab12" + "0" * 60
    payload = payload_for(digest, (1 << 24) + 7)
    assert payload == WatermarkPayload(0xAB12, 7)
    with pytest.raises(ValueError):
        payload_for("not-hex", 1)


def test_convolutional_code_corrects_errors():
    bits = PAYLOAD.to_bits()
    soft = 1.0 - 2.0 * wm._conv_encode(bits)
    soft[[3, 20, 41, 77, 100]] *= -1  # five flipped chips
    assert np.array_equal(wm._viterbi(soft), bits)


@pytest.mark.parametrize("shape", [(16, 64, 64), (8, 128, 128), (1, 32, 32), (12, 48, 80)])
def test_embed_detect_exact_payload(shape):
    t, h, w = shape
    for clip in (_shapes(1, h, w, t), _textured(t, h, w)):
        marked = embed_watermark(clip, PAYLOAD)
        assert marked.shape == clip.shape and marked.dtype == np.uint8
        assert _psnr(clip, marked) > PSNR_FLOOR_DB
        det = detect_watermark(marked)
        assert det.detected, det
        assert det.payload == PAYLOAD
        assert det.p_value < wm.P_THRESHOLD
        assert det.frames_used == t


def test_single_image_without_time_axis():
    image = _shapes(2, 32, 32, 1)[0]
    marked = embed_watermark(image, PAYLOAD)
    assert marked.shape == image.shape
    assert detect_watermark(marked).payload == PAYLOAD


def test_psnr_of_spread_mode_is_near_target():
    clip = _textured(16, 128, 128, seed=4)
    marked = embed_watermark(clip, PAYLOAD)
    assert abs(_psnr(clip, marked) - wm.TARGET_PSNR_DB) < 1.0
    # only luma moves: R, G and B change by the same amount wherever nothing clipped
    diff = marked.astype(int) - clip.astype(int)
    inside = (clip > 10).all(-1) & (clip < 245).all(-1)
    spread = diff.max(-1) - diff.min(-1)
    assert np.mean(spread[inside] <= 1) > 0.99


def test_survives_h264_crf23_round_trip(tmp_path):
    from cinecube.video_io import read_video, write_video

    clip = _shapes(5, 128, 128, 16)
    marked = embed_watermark(clip, PAYLOAD)
    path = tmp_path / "marked.mp4"
    write_video(path, marked, fps=8)  # write_video uses CRF 17; re-encode at 23 below
    import av

    decoded, _ = read_video(path)
    out = tmp_path / "crf23.mp4"
    with av.open(str(out), mode="w") as container:
        stream = container.add_stream("libx264", rate=8)
        stream.options = {"crf": "23"}
        stream.height, stream.width = decoded.shape[1:3]
        stream.pix_fmt = "yuv420p"
        for frame in decoded:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    frames, _ = read_video(out)
    det = detect_watermark(frames)
    assert det.detected and det.payload == PAYLOAD


def test_survives_crop_and_frame_drop():
    clip = _textured(16, 128, 128, seed=2)
    marked = embed_watermark(clip, PAYLOAD)
    det = detect_watermark(marked[::2, 7:120, 11:125])  # every other frame, shifted crop
    assert det.detected and det.payload == PAYLOAD
    assert det.offset == (7, 11)


def test_still_image_survives_brightness_change():
    image = _textured(1, 32, 32, seed=3)
    marked = embed_watermark(image, PAYLOAD)
    assert detect_watermark(marked).mode == "quantized"  # one small image: quantization mode
    for factor in (0.8, 1.2):
        brighter = np.clip(np.rint(marked * factor), 0, 255).astype(np.uint8)
        det = detect_watermark(brighter)
        assert det.detected and det.payload == PAYLOAD, (factor, det)


def test_clean_content_is_not_detected():
    from cinecube.data.assets import real_clip_paths
    from cinecube.video_io import read_video

    frames, _ = read_video(real_clip_paths(["carphone"])["carphone"])
    for clip in (frames[:24], _shapes(8, 64, 64, 16), _shapes(9, 32, 32, 1), _textured(8, 96, 160)):
        det = detect_watermark(clip)
        assert not det.detected
        assert det.p_value > 1e-3


def test_wrong_key_does_not_detect():
    clip = _textured(8, 128, 128, seed=6)
    marked = embed_watermark(clip, PAYLOAD, key=b"a private key")
    assert detect_watermark(marked, key=b"a private key").payload == PAYLOAD
    det = detect_watermark(marked)  # the public default key
    assert not det.detected
    assert det.p_value > 1e-3
    still = embed_watermark(_shapes(4, 32, 32, 1), PAYLOAD, key=b"a private key")
    assert not detect_watermark(still).detected


def test_null_p_values_are_conservative_over_keys():
    """On clean content, p-values under many random keys are no smaller than uniform."""
    rng = np.random.default_rng(0)
    means = wm._means(_textured(8, 96, 96, seed=9))
    p = np.array([wm._detect_means(means, rng.bytes(8), 8).p_value for _ in range(300)])
    assert np.mean(p < 0.1) <= 0.1 + 3 * math.sqrt(0.1 * 0.9 / 300)
    assert np.mean(p < 0.01) <= 0.01 + 3 * math.sqrt(0.01 * 0.99 / 300)


def test_rejects_bad_frames():
    with pytest.raises(ValueError):
        embed_watermark(np.zeros((2, 8, 8), dtype=np.uint8), PAYLOAD)
    with pytest.raises(ValueError):
        detect_watermark(np.zeros((1, 8, 8, 3), dtype=np.float32))


# --------------------------------------------------------------------------------------------
# Small frames: the low-band layout
# --------------------------------------------------------------------------------------------


def _real(height: int, width: int, frames: int = 16, start: int = 0, name: str = "carphone") -> np.ndarray:
    """A window of a held-out real clip, centre-cropped to the aspect ratio and resized."""
    from cinecube.data.assets import real_clip_paths
    from cinecube.safety.distortions import resize
    from cinecube.video_io import read_video

    video, _ = read_video(real_clip_paths([name])[name])
    video = video[start : start + frames]
    _, h, w, _ = video.shape
    keep = min(w, round(h * width / height))
    video = video[:, :, (w - keep) // 2 : (w - keep) // 2 + keep]
    return resize(video, height, width)


@pytest.mark.parametrize("shape", [(32, 32), (64, 64), (48, 64), (64, 40), (33, 47), (35, 35)])
def test_low_band_layout_stays_below_an_eighth_of_the_sampling_rate(shape):
    u, v = wm._band_bins(shape)
    assert u.size == wm.BAND_BINS and len(set(zip(u.tolist(), v.tolist()))) == wm.BAND_BINS
    cycles = np.maximum(np.abs(u) / shape[0], np.abs(v) / shape[1])  # per pixel
    assert cycles.min() >= wm.BAND_LOWEST and cycles.max() < 0.25
    if shape == (32, 32):  # the tiled layout: max(|u|, |v|) in [2, 7], as before
        assert set(np.maximum(np.abs(u), np.abs(v)).tolist()) == set(range(2, wm.BAND + 1))
    if min(shape) >= 48:  # room for the whole band below 1/8 cycle per pixel (+1 bin's rounding)
        assert cycles.max() <= 1 / 8 + 1 / min(shape)
    assert wm._low_shape(*shape) == shape and wm._low_shape(200, 90) == (64, 64)


def test_every_frame_size_from_32_has_a_low_band_layout():
    for h in range(32, 65):
        for w in range(32, 65):
            u, v = wm._band_bins((h, w))
            assert u.size == wm.BAND_BINS and (np.abs(u) < h / 2).all() and (v < w / 2).all()


@pytest.mark.parametrize("shape", [(64, 64), (48, 80)])
def test_small_real_clip_survives_resize_half_and_brightness(shape):
    """Small real footage drowns spread spectrum, so it is marked in quantization mode; in the
    low-band layout that survives a 0.5x resize and back, and a brightness change with clipping."""
    from cinecube.safety.distortions import resize_half_and_back

    clip = _real(*shape)
    marked = embed_watermark(clip, PAYLOAD)
    assert _psnr(clip, marked) > PSNR_FLOOR_DB
    det = detect_watermark(marked)
    assert det.detected and det.payload == PAYLOAD and det.mode == "quantized" and det.tile == (shape[0], 64)
    attacked = {
        "resize": resize_half_and_back(marked),
        "brighter": np.clip(np.rint(marked * 1.2), 0, 255).astype(np.uint8),
        "darker": np.clip(np.rint(marked * 0.8), 0, 255).astype(np.uint8),
    }
    assert (attacked["brighter"] == 255).any()  # some values clip
    for name, frames in attacked.items():
        det = detect_watermark(frames)
        assert det.detected and det.payload == PAYLOAD, (name, det)


@pytest.mark.parametrize("shape", [(64, 64), (48, 80)])
def test_small_spread_clip_survives_resize_half(shape):
    clip = _shapes(11, *shape, 16)
    marked = embed_watermark(clip, PAYLOAD, psnr_db=34.0)
    from cinecube.safety.distortions import resize_half_and_back

    det = detect_watermark(resize_half_and_back(marked))
    assert det.detected and det.payload == PAYLOAD, det


def test_small_clean_clips_are_not_detected():
    from cinecube.safety.distortions import resize_half_and_back

    for clip in (_real(64, 64), _real(48, 80, start=40), _real(64, 64, name="tree"), _shapes(12, 48, 80, 16)):
        for frames in (clip, resize_half_and_back(clip), clip[:1]):
            det = detect_watermark(frames)
            assert not det.detected and det.p_value > 1e-3, det


def test_null_p_values_are_conservative_on_small_real_clips():
    """The quantization search over blurs and gains and the low-band layout keep the bound."""
    rng = np.random.default_rng(1)
    p = []
    for clip in (_real(64, 64), _real(48, 80, start=20)):
        means = wm._means(clip)
        p += [wm._detect_means(means, rng.bytes(8), len(clip)).p_value for _ in range(150)]
    p = np.array(p)
    assert np.mean(p < 0.1) <= 0.1 + 3 * math.sqrt(0.1 * 0.9 / p.size)
    assert np.mean(p < 0.01) <= 0.01 + 3 * math.sqrt(0.01 * 0.99 / p.size)
