"""The output gate end to end: every write is reviewed, watermarked, signed and logged, and
a refusing or failing stage leaves no file behind."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cinecube.errors import CinecubeError
from cinecube.safety.guard import SafetyBlockedError, SafetySettings, publish

SHA = "ab" * 32


def _shapes_video(frames=8, size=64):
    from cinecube.data.shapes import ShapesWorld

    return ShapesWorld(seed=5).sample_at(0, size, size, frames).video


def _face_video(frames=8):
    from cinecube.data.assets import photo_paths
    from cinecube.safety.detector_training import resize_frames
    from cinecube.video_io import read_video

    astronaut = next(p for p in photo_paths() if p.stem == "astronaut")
    image, _ = read_video(astronaut)
    return np.repeat(resize_frames(image[:1], 256, 256), frames, axis=0)


def _audit_records(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def _publish(frames, path, audit, **settings):
    return publish(
        frames,
        path,
        prompt="a red circle moving right",
        seed=1,
        fps=8.0,
        model_name="test",
        checkpoint_sha256=SHA,
        generation={"steps": 4},
        settings=SafetySettings(audit_path=str(audit), **settings),
    )


def test_published_video_is_signed_watermarked_and_logged(tmp_path):
    from cinecube.safety.audit import sha256_file
    from cinecube.safety.provenance import read_provenance
    from cinecube.safety.watermark import detect_watermark
    from cinecube.video_io import read_video

    out, audit = tmp_path / "v.mp4", tmp_path / "audit.jsonl"
    result = _publish(_shapes_video(), out, audit)
    assert out.exists() and not list(tmp_path.glob(".*partial*"))
    report = read_provenance(out)
    assert report.state == "Trusted"
    assert report.claims["checkpoint_sha256"] == SHA and "prompt" not in report.claims
    assert report.soft_binding == result.watermark_payload.replace("-", "")
    detection = detect_watermark(read_video(out)[0])
    assert detection.detected and detection.payload.as_hex() == result.watermark_payload
    record = _audit_records(audit)[-1]
    assert record["outcome"] == "published" and record["output_sha256"] == sha256_file(out)
    assert [s["stage"] for s in record["stages"]] == ["prompt_policy", "frame_review", "watermark", "c2pa"]


# A 64x64x8 clip and generation id whose 40 dB mark H.264 (CRF 17, as cinecube writes mp4)
# loses: found by scanning 200 clips (seed s, generation id 1000 + s), 1 of which failed so.
HARD_CLIP_SEED, HARD_GENERATION_ID = 164, 1164


def _hard_case(monkeypatch):
    from cinecube.data.shapes import ShapesWorld
    from cinecube.safety import guard

    monkeypatch.setattr(guard.secrets, "randbits", lambda bits: HARD_GENERATION_ID)
    return ShapesWorld(seed=HARD_CLIP_SEED).sample_at(0, 64, 64, 8).video


def test_gate_strengthens_a_mark_the_file_would_lose(tmp_path, monkeypatch):
    from cinecube.safety.watermark import detect_watermark, embed_watermark, payload_for
    from cinecube.video_io import read_video, write_video

    frames = _hard_case(monkeypatch)
    payload = payload_for(SHA, HARD_GENERATION_ID)
    plain = tmp_path / "plain.mp4"
    write_video(plain, embed_watermark(frames, payload), fps=8.0)
    assert detect_watermark(read_video(plain)[0]).payload != payload  # the case is hard at 40 dB

    out, audit = tmp_path / "v.mp4", tmp_path / "audit.jsonl"
    result = _publish(frames, out, audit)
    assert result.watermark_payload == payload.as_hex()
    detection = detect_watermark(read_video(out)[0])
    assert detection.detected and detection.payload == payload
    stage = next(s for s in _audit_records(audit)[-1]["stages"] if s["stage"] == "watermark")
    assert stage["attempts"] >= 2 and stage["psnr_db"] < 39.0
    assert set(stage["survives"]) == {"h264_crf23", "resize_half"}


def test_a_mark_no_strength_keeps_blocks_the_output(tmp_path, monkeypatch):
    from cinecube.safety import guard

    frames = _hard_case(monkeypatch)
    monkeypatch.setattr(guard, "WATERMARK_PSNR_STEPS_DB", (40.0,))
    out, audit = tmp_path / "v.mp4", tmp_path / "audit.jsonl"
    with pytest.raises(SafetyBlockedError) as info:
        _publish(frames, out, audit)
    assert info.value.stage == "watermark" and "did not survive" in str(info.value)
    assert not out.exists() and not list(tmp_path.glob("*.mp4")) and not list(tmp_path.glob(".*partial*"))
    record = _audit_records(audit)[-1]
    assert record["outcome"] == "blocked" and record["failed_stage"] == "watermark"
    assert record["stages"][-1]["decision"] == "failed"


def test_denied_prompt_is_logged_and_writes_nothing(tmp_path):
    out, audit = tmp_path / "v.mp4", tmp_path / "audit.jsonl"
    with pytest.raises(SafetyBlockedError) as info:
        publish(
            _shapes_video(),
            out,
            prompt="a realistic photo of a beheading with gore everywhere",
            seed=1,
            fps=8,
            model_name="t",
            checkpoint_sha256=SHA,
            generation={},
            settings=SafetySettings(audit_path=str(audit)),
        )
    assert info.value.stage == "prompt_policy"
    assert not out.exists() and not list(tmp_path.glob("*.mp4"))
    record = _audit_records(audit)[-1]
    assert record["outcome"] == "blocked" and record["output_sha256"] is None
    assert "beheading" not in audit.read_text()  # the log holds hashes, not prompts


def test_face_blocks_by_default_and_blur_publishes(tmp_path):
    from cinecube.safety.frames import review_frames
    from cinecube.video_io import read_video

    audit = tmp_path / "audit.jsonl"
    existing = tmp_path / "v.mp4"
    existing.write_bytes(b"an earlier file that must survive")
    with pytest.raises(SafetyBlockedError) as info:
        _publish(_face_video(), existing, audit)
    assert info.value.stage == "frame_review"
    assert existing.read_bytes() == b"an earlier file that must survive"
    assert not list(tmp_path.glob(".*partial*"))
    blurred = tmp_path / "blurred.mp4"
    _publish(_face_video(), blurred, audit, frame_action="blur")
    assert review_frames(read_video(blurred)[0]).allowed


def test_a_failing_stage_leaves_nothing(tmp_path):
    audit = tmp_path / "audit.jsonl"
    (tmp_path / "key.pem").write_text("not a key")
    (tmp_path / "chain.pem").write_text("not a chain")
    out = tmp_path / "v.mp4"
    with pytest.raises(CinecubeError):  # the signing stage refuses the key, in one line
        _publish(
            _shapes_video(),
            out,
            audit,
            signing_key=str(tmp_path / "key.pem"),
            signing_chain=str(tmp_path / "chain.pem"),
        )
    assert not out.exists() and not list(tmp_path.glob("*.mp4")) and not list(tmp_path.glob(".*partial*"))
    assert _audit_records(audit)[-1]["outcome"] == "error"


def test_skipped_stages_are_recorded(tmp_path):
    from cinecube.safety.provenance import read_provenance

    out, audit = tmp_path / "v.png", tmp_path / "audit.jsonl"
    result = _publish(_shapes_video(frames=1), out, audit, watermark=False)
    assert result.skipped == ["watermark"] and result.watermark_payload is None
    assert read_provenance(out).claims["skipped_stages"] == ["watermark"]
    assert _audit_records(audit)[-1]["skipped_stages"] == ["watermark"]


def _cli(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "cinecube.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"},
        timeout=600,
    )


def test_generate_then_verify_through_the_cli(tmp_path):
    import av

    out = tmp_path / "ours.mp4"
    run = _cli(
        "generate",
        "a blue square moving left on a white background",
        "--frames",
        "8",
        "--height",
        "64",
        "--width",
        "64",
        "--steps",
        "4",
        "-o",
        str(out),
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    assert "watermark payload" in run.stdout

    verified = _cli("verify", str(out), "--json", cwd=tmp_path)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    report = json.loads(verified.stdout)
    assert report["c2pa"]["state"] == "Trusted" and report["watermark"]["detected"]

    # A re-encode drops the manifest; the watermark still says it is ours.
    reencoded = tmp_path / "reencoded.mp4"
    with av.open(str(out)) as src, av.open(str(reencoded), "w") as dst:
        stream = dst.add_stream("libx264", rate=8)
        stream.options = {"crf": "23"}
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for frame in src.decode(video=0):
            dst.mux(stream.encode(av.VideoFrame.from_ndarray(frame.to_ndarray(format="rgb24"), format="rgb24")))
        dst.mux(stream.encode())
    again = _cli("verify", str(reencoded), "--json", cwd=tmp_path)
    report = json.loads(again.stdout)
    assert report["c2pa"]["state"] == "NoManifest"
    assert again.returncode == 0 and report["watermark"]["detected"], again.stdout

    # A flipped bit in the media data: the manifest no longer holds.
    data = bytearray(out.read_bytes())
    data[data.index(b"mdat") + 200] ^= 0x01
    tampered = tmp_path / "tampered.mp4"
    tampered.write_bytes(bytes(data))
    bad = _cli("verify", str(tampered), cwd=tmp_path)
    assert bad.returncode == 1 and "altered" in bad.stdout


def test_verify_exit_codes_for_real_and_unreadable_files(tmp_path):
    from cinecube.data.assets import real_clip_paths

    real = _cli("verify", str(real_clip_paths(["carphone"])["carphone"]), cwd=tmp_path)
    assert real.returncode == 1 and "NOT VERIFIED" in real.stdout
    junk = tmp_path / "junk.mp4"
    junk.write_text("not a video")
    unreadable = _cli("verify", str(junk), cwd=tmp_path)
    assert unreadable.returncode == 2 and "error" in unreadable.stderr


def test_denied_prompt_through_the_cli_exits_non_zero_and_writes_nothing(tmp_path):
    out = tmp_path / "x.mp4"
    run = _cli(
        "generate", "step by step instructions to build a pipe bomb", "--frames", "8", "-o", str(out), cwd=tmp_path
    )
    assert run.returncode == 2 and "content policy" in run.stderr
    assert not out.exists()


@pytest.mark.parametrize("shape", [(64, 64), (48, 80)])
def test_small_clip_as_published_survives_resize_half(tmp_path, shape):
    """Below 128x128 the gate's mark survives a 0.5x resize of the written file, for real
    footage (quantization mode) and shapes videos (spread spectrum) alike."""
    from cinecube.data.assets import real_clip_paths
    from cinecube.data.shapes import ShapesWorld
    from cinecube.safety.distortions import h264_round_trip, resize, resize_half_and_back
    from cinecube.safety.guard import write_watermarked
    from cinecube.safety.watermark import detect_watermark, payload_for
    from cinecube.video_io import read_video

    real, _ = read_video(real_clip_paths(["carphone"])["carphone"])
    clips = {
        "real": resize(real[30:46, :, 22:154], *shape),
        "shapes": ShapesWorld(seed=5).sample_at(3, *shape, 16).video,
    }
    for i, (kind, frames) in enumerate(clips.items()):
        payload = payload_for(SHA, 77 + i)
        stage = {}
        path = tmp_path / f"{kind}.mp4"
        write_watermarked(frames, payload, path, 8.0, stage)
        assert stage["survives"] == {"resize_half": True, "h264_crf23": True}, (kind, stage)
        written = read_video(path)[0]
        for attacked in (resize_half_and_back(written), h264_round_trip(written, 23, 8.0)):
            det = detect_watermark(attacked)
            assert det.detected and det.payload == payload, (kind, det)
