"""`cinecube verify`: each manifest state explained as it is, bad --trust files refused first,
and a damaged file whose frames no longer decode still judged by its manifest."""

import json
import struct
from pathlib import Path

import pytest

from cinecube.cli import main
from cinecube.safety.provenance import SigningIdentity, generation_claims, sign_media

SHA = "ab" * 32


@pytest.fixture(autouse=True)
def config_dir(tmp_path, monkeypatch):
    """Every test is its own installation, with its own signing identity and trust anchor."""
    folder = tmp_path / "config"
    monkeypatch.setenv("CINECUBE_CONFIG_DIR", str(folder))
    return folder


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Unsigned 64x64x8 mp4 bytes, plain and carrying the cinecube watermark (as the gate
    writes it), and that watermark's payload."""
    from cinecube.data.shapes import ShapesWorld
    from cinecube.safety.guard import write_watermarked
    from cinecube.safety.watermark import payload_for
    from cinecube.video_io import write_video

    folder = tmp_path_factory.mktemp("clips")
    frames = ShapesWorld(seed=5).sample_at(0, 64, 64, 8).video
    payload = payload_for(SHA, 77)
    write_watermarked(frames, payload, folder / "marked.mp4", 8.0, {})
    write_video(folder / "plain.mp4", frames, fps=8.0)
    return {
        "plain": (folder / "plain.mp4").read_bytes(),
        "marked": (folder / "marked.mp4").read_bytes(),
        "payload": payload.as_hex(),
    }


def _clip(clips, folder: Path, kind: str, sign_with: SigningIdentity | None = None) -> Path:
    """A copy of a clip; signed by ``sign_with`` when given, binding the watermark it carries."""
    path = folder / f"{kind}.mp4"
    path.write_bytes(clips[kind])
    if sign_with is not None:
        claims = generation_claims(model="test", checkpoint_sha256=SHA, prompt="a red circle", seed=1)
        binding = clips["payload"].replace("-", "") if kind == "marked" else None
        sign_media(path, claims, binding, identity=sign_with)
    return path


def _other_installation(tmp_path) -> SigningIdentity:
    """A signing identity of another installation (its own config folder and root CA)."""
    SigningIdentity.load_or_create()  # this installation exists too, with its own root
    return SigningIdentity.load_or_create(tmp_path / "other-installation")


def _mdat(data: bytes) -> tuple[int, int]:
    """(offset, size) of the top-level mdat box of an mp4."""
    pos = 0
    while pos + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if kind == b"mdat":
            return pos, size
        pos += size
    raise AssertionError("no mdat box")


def _zero_media_data(path: Path) -> None:
    """Zero the whole video payload: FFmpeg no longer decodes a frame, the manifest stays."""
    data = bytearray(path.read_bytes())
    offset, size = _mdat(bytes(data))
    data[offset + 8 : offset + size] = bytes(size - 8)
    path.write_bytes(bytes(data))


def _damage_manifest(path: Path) -> None:
    """Zero the start of the C2PA box's content: the manifest cannot be parsed, the media plays."""
    data = bytearray(path.read_bytes())
    start = data.index(b"uuid") + 4
    data[start + 20 : start + 76] = bytes(56)
    path.write_bytes(bytes(data))


def run_cli(args, capsys):
    code = main(["verify", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _one_line_error(err: str) -> str:
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err, err
    return err


# ---------------------------------------------------------------------------------------------
# --trust
# ---------------------------------------------------------------------------------------------


def test_garbage_trust_file_is_refused_naming_it(tmp_path, clips, capsys):
    path = _clip(clips, tmp_path, "marked", sign_with=SigningIdentity.load_or_create())
    garbage = tmp_path / "x.pem"
    garbage.write_text("this is not a certificate\n")

    code, out, err = run_cli([path, "--trust", garbage], capsys)
    assert code == 2 and out == ""
    err = _one_line_error(err)
    assert f"--trust '{garbage}' holds no PEM certificates" in err
    assert "manifest" not in err and "re-encoded" not in err

    # Checked before anything else: the trust file is reported, not the missing video.
    code, out, err = run_cli([tmp_path / "missing.mp4", "--trust", garbage, "--json"], capsys)
    assert code == 2 and out == "" and "--trust" in _one_line_error(err) and "missing.mp4" not in err


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda p: None, "does not exist"),
        (lambda p: p.mkdir(), "is a folder"),
        (lambda p: p.write_bytes(b"\x30\x82\x01\x0a\xff\xfe" + bytes(64)), "is not UTF-8 text"),
        (
            lambda p: p.write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
            "holds no PEM certificates: it has PRIVATE KEY blocks but no CERTIFICATE",
        ),
        (
            lambda p: p.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
            "holds no PEM certificates: a certificate block does not parse",
        ),
    ],
    ids=["missing", "folder", "binary", "key-only", "bad-certificate"],
)
def test_unusable_trust_file_is_one_line_and_exit_2(tmp_path, clips, capsys, make, match):
    path = _clip(clips, tmp_path, "plain", sign_with=SigningIdentity.load_or_create())
    trust = tmp_path / "roots.pem"
    make(trust)
    code, out, err = run_cli([path, "--trust", trust], capsys)
    assert code == 2 and out == ""
    assert f"--trust '{trust}' {match}" in _one_line_error(err)


def test_trust_file_with_a_key_and_certificates_is_used(tmp_path, clips, capsys):
    """An identity file (key + leaf + root) works as --trust: its certificates are kept."""
    other = _other_installation(tmp_path)
    path = _clip(clips, tmp_path, "plain", sign_with=other)
    code, out, _ = run_cli([path, "--trust", other.key_path], capsys)
    assert code == 0 and out.startswith("VERIFIED: signed by cinecube (C2PA Trusted)")


# ---------------------------------------------------------------------------------------------
# Manifest states
# ---------------------------------------------------------------------------------------------


def test_own_signed_file_is_verified_by_its_manifest(tmp_path, clips, capsys):
    path = _clip(clips, tmp_path, "marked", sign_with=SigningIdentity.load_or_create())
    code, out, _ = run_cli([path], capsys)
    assert code == 0
    assert (
        out.splitlines()[0]
        == f"VERIFIED: signed by cinecube (C2PA Trusted) and the watermark matches ({clips['payload']})"
    )

    code, out, _ = run_cli([path, "--json"], capsys)
    report = json.loads(out)
    assert code == 0 and report["verified"] and report["verified_by"] == "manifest"
    assert {"file", "verified", "verdict", "c2pa", "watermark", "detector", "media"} <= set(report)
    assert report["media"] == {"decoded": True, "error": None, "frames": 8, "height": 64, "width": 64, "fps": 8.0}
    assert report["watermark"]["checked"] and report["watermark"]["payload"] == clips["payload"]


def test_valid_manifest_from_another_installation_names_the_untrusted_signer(tmp_path, clips, capsys):
    other = _other_installation(tmp_path)
    path = _clip(clips, tmp_path, "plain", sign_with=other)
    signer_cn = other.subject.split(",")[0]  # "CN=cinecube signer <id>"

    code, out, _ = run_cli([path], capsys)
    verdict = out.splitlines()[0]
    assert code == 1 and verdict.startswith("NOT VERIFIED: the C2PA manifest is intact and signed, but by ")
    assert signer_cn in verdict and "does not trust" in verdict and "--trust" in verdict
    assert "re-encoded" not in out and "no trusted manifest" not in out
    assert "not trusted here" in out.splitlines()[1]  # the C2PA line

    code, out, _ = run_cli([path, "--json"], capsys)
    report = json.loads(out)
    assert code == 1 and report["c2pa"]["state"] == "Valid" and report["verified_by"] is None

    # Given the other installation's root, the same file is verified by its manifest.
    root = tmp_path / "other-root.pem"
    root.write_bytes(other.trust_anchor_pem)
    code, out, _ = run_cli([path, "--trust", root], capsys)
    assert code == 0 and out.startswith("VERIFIED: signed by cinecube (C2PA Trusted)")


def test_valid_manifest_with_our_watermark_is_verified_by_the_watermark(tmp_path, clips, capsys):
    other = _other_installation(tmp_path)
    path = _clip(clips, tmp_path, "marked", sign_with=other)
    code, out, _ = run_cli([path], capsys)
    verdict = out.splitlines()[0]
    assert code == 0 and verdict.startswith(f"VERIFIED by watermark: cinecube payload {clips['payload']}")
    assert other.subject.split(",")[0] in verdict and "does not trust" in verdict and "--trust" in verdict
    assert "re-encoded" not in verdict and "stripped" not in verdict

    report = json.loads(run_cli([path, "--json"], capsys)[1])
    assert report["verified"] and report["verified_by"] == "watermark" and report["c2pa"]["state"] == "Valid"


def test_unreadable_manifest_is_not_explained_as_stripped(tmp_path, clips, capsys):
    path = _clip(clips, tmp_path, "marked", sign_with=SigningIdentity.load_or_create())
    _damage_manifest(path)
    code, out, _ = run_cli([path], capsys)
    verdict = out.splitlines()[0]
    assert code == 0 and verdict.startswith("VERIFIED by watermark")
    assert "the C2PA manifest could not be read: " in verdict and "readable manifest" in verdict  # c2pa's reason
    assert "re-encoded" not in verdict and "stripped" not in verdict

    plain = _clip(clips, tmp_path, "plain", sign_with=SigningIdentity.load_or_create())
    _damage_manifest(plain)
    code, out, _ = run_cli([plain], capsys)
    assert code == 1 and out.startswith("NOT VERIFIED: the C2PA manifest could not be read (")
    assert "re-encoded" not in out


def test_no_manifest_is_explained_as_reencoded_or_stripped(tmp_path, clips, capsys):
    code, out, _ = run_cli([_clip(clips, tmp_path, "marked")], capsys)
    assert code == 0 and out.splitlines()[0].endswith(
        "(no C2PA manifest: the file was re-encoded or its metadata stripped)"
    )
    code, out, _ = run_cli([_clip(clips, tmp_path, "plain")], capsys)
    assert code == 1 and out.startswith("NOT VERIFIED: no C2PA manifest and no cinecube watermark")


# ---------------------------------------------------------------------------------------------
# Damaged and unreadable files
# ---------------------------------------------------------------------------------------------


def test_damaged_signed_file_whose_frames_do_not_decode_gets_the_manifest_verdict(tmp_path, clips, capsys):
    path = _clip(clips, tmp_path, "marked", sign_with=SigningIdentity.load_or_create())
    _zero_media_data(path)

    code, out, err = run_cli([path], capsys)
    lines = out.splitlines()
    assert code == 1 and err == ""
    assert lines[0] == (
        "NOT VERIFIED: the C2PA manifest fails validation (the file was altered after signing); "
        "the frames could not be decoded, so there is no watermark or detector evidence"
    )
    assert any(line.startswith("  media:     not decodable (cannot read ") for line in lines)
    assert "  watermark: not checked (frames not decodable)" in lines

    code, out, _ = run_cli([path, "--json"], capsys)
    report = json.loads(out)
    assert code == 1 and not report["verified"] and report["c2pa"]["state"] == "Invalid"
    assert "assertion.bmffHash.mismatch" in report["c2pa"]["errors"]
    assert not report["media"]["decoded"] and report["media"]["error"].startswith("cannot read")
    assert report["watermark"] == {
        "checked": False,
        "detected": False,
        "payload": None,
        "p_value": None,
        "frames_used": 0,
    }
    assert report["detector"]["score"] is None


def test_damaged_file_with_no_manifest_cannot_be_read(tmp_path, clips, capsys):
    path = _clip(clips, tmp_path, "plain")
    _zero_media_data(path)
    code, out, err = run_cli([path], capsys)
    assert code == 2 and out == "" and "cannot read" in _one_line_error(err)
    code, out, _ = run_cli([path, "--json"], capsys)
    assert code == 2 and json.loads(out)["error"].startswith("cannot read")


@pytest.mark.parametrize("kind, match", [("missing", "does not exist"), ("folder", "it is a folder")])
def test_missing_file_or_folder_is_one_line_and_exit_2(tmp_path, capsys, kind, match):
    path = tmp_path / "target.mp4"
    if kind == "folder":
        path.mkdir()
    code, out, err = run_cli([path], capsys)
    assert code == 2 and out == "" and match in _one_line_error(err)
    code, out, err = run_cli([path, "--json"], capsys)
    assert code == 2 and match in json.loads(out)["error"]


def test_damaged_file_with_an_unreadable_manifest_cannot_be_read(tmp_path, clips, capsys):
    path = _clip(clips, tmp_path, "plain", sign_with=SigningIdentity.load_or_create())
    _damage_manifest(path)
    _zero_media_data(path)
    code, out, err = run_cli([path], capsys)
    assert code == 2 and out == ""
    err = _one_line_error(err)
    assert "cannot read" in err and "its C2PA manifest cannot be read either (" in err


def test_trusted_file_whose_frames_do_not_decode_is_verified_by_its_manifest(tmp_path, clips, capsys, monkeypatch):
    """A Trusted manifest covers the exact bytes, so frames this machine cannot decode (a codec
    missing here) leave the verdict standing, with the watermark unchecked."""
    from cinecube import video_io
    from cinecube.errors import VideoIOError

    path = _clip(clips, tmp_path, "marked", sign_with=SigningIdentity.load_or_create())

    def no_decoder(p):
        raise VideoIOError(f"cannot read '{p}': no decoder")

    monkeypatch.setattr(video_io, "read_video", no_decoder)
    code, out, _ = run_cli([path], capsys)
    assert code == 0
    assert out.splitlines()[0] == (
        "VERIFIED: signed by cinecube (C2PA Trusted); the frames could not be decoded, so the watermark was not checked"
    )
