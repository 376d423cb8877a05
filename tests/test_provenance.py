"""C2PA signing and reading: states, tampering, stripping, keys and atomic in-place signing."""

import hashlib
import json
import multiprocessing
import os
import stat
import struct
from pathlib import Path

import numpy as np
import pytest

from cinecube.errors import CinecubeError
from cinecube.safety import provenance
from cinecube.safety.provenance import (
    WATERMARK_ALG,
    Ingredient,
    ProvenanceError,
    SigningIdentity,
    default_config_dir,
    generation_claims,
    read_provenance,
    sign_media,
)
from cinecube.video_io import read_video, write_video

PROMPT = "a red cube spinning slowly over a checkerboard floor"
PAYLOAD = "0badc0ffee15600d"


@pytest.fixture(autouse=True)
def config_dir(tmp_path, monkeypatch):
    """Every test gets its own installation: keys go to a temporary folder, never ~/.config."""
    folder = tmp_path / "config"
    monkeypatch.setenv("CINECUBE_CONFIG_DIR", str(folder))
    return folder


@pytest.fixture
def claims():
    return generation_claims(
        model="cinecube-small",
        checkpoint_sha256="ab" * 32,
        prompt=PROMPT,
        seed=1234,
        height=64,
        width=64,
        frames=8,
        steps=20,
        guidance=5.0,
        fps=8.0,
    )


def _frames(t=8, h=64, w=64, seed=0):
    """(T, H, W, 3) uint8: a moving gradient plus a little noise, like decoded video."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    frames = np.stack(
        [np.stack([(xx * 4 + i * 8) % 256, (yy * 4) % 256, ((xx + yy) * 2) % 256], -1) for i in range(t)]
    ).astype(np.int16)
    frames += rng.integers(-8, 9, frames.shape)
    return np.clip(frames, 0, 255).astype(np.uint8)


def _media(folder: Path, suffix: str) -> Path:
    frames = _frames(t=1 if suffix == ".png" else 8)
    return write_video(folder / f"clip{suffix}", frames, fps=8.0)


def _signed(folder, suffix, claims):
    path = _media(folder, suffix)
    sign_media(path, claims, PAYLOAD)
    return path


def _top_level_boxes(data: bytes) -> dict[bytes, tuple[int, int]]:
    """ISO BMFF top-level boxes: type -> (offset, size)."""
    boxes, pos = {}, 0
    while pos + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if size == 1:
            size = struct.unpack(">Q", data[pos + 8 : pos + 16])[0]
        boxes[kind] = (pos, size)
        if size < 8:
            break
        pos += size
    return boxes


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# ---------------------------------------------------------------------------------------------
# Signing and reading
# ---------------------------------------------------------------------------------------------


def test_signed_mp4_reads_trusted_with_claims_intact(tmp_path, claims):
    path = _media(tmp_path, ".mp4")
    frames_before, _ = read_video(path)
    sign_media(path, claims, PAYLOAD)

    report = read_provenance(path)
    assert report.state == "Trusted" and report.verified
    assert report.errors == []
    assert report.claims == claims
    assert report.claims["prompt_sha256"] == hashlib.sha256(PROMPT.encode()).hexdigest()
    assert report.soft_binding == PAYLOAD and report.soft_binding_alg == WATERMARK_ALG
    assert report.digital_source_type.endswith("/trainedAlgorithmicMedia")
    assert report.signer.startswith("CN=cinecube signer ") and report.title == "clip.mp4"
    # The prompt itself is nowhere in the file, and signing leaves the pictures alone.
    assert PROMPT.encode() not in path.read_bytes()
    frames_after, _ = read_video(path)
    np.testing.assert_array_equal(frames_after, frames_before)
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("suffix", [".png", ".gif"])
def test_png_and_gif_sign_and_verify(tmp_path, claims, suffix):
    path = _signed(tmp_path, suffix, claims)
    report = read_provenance(path)
    assert report.state == "Trusted"
    assert report.claims["seed"] == 1234 and report.soft_binding == PAYLOAD
    assert read_video(path)[0].shape[1:] == (64, 64, 3)  # still an ordinary image / animation


def test_unsigned_output_and_real_clip_have_no_manifest(tmp_path):
    from cinecube.data.assets import real_clip_paths

    assert read_provenance(_media(tmp_path, ".mp4")).state == "NoManifest"
    carphone = real_clip_paths(["carphone"])["carphone"]
    report = read_provenance(carphone)
    assert report.state == "NoManifest" and report.claims is None and report.soft_binding is None


def test_signing_without_watermark_has_no_soft_binding(tmp_path, claims):
    path = _media(tmp_path, ".mp4")
    sign_media(path, claims, None, title="final-name.mp4")
    report = read_provenance(path)
    assert report.state == "Trusted" and report.soft_binding is None
    assert report.title == "final-name.mp4"


# ---------------------------------------------------------------------------------------------
# Tampering and stripping
# ---------------------------------------------------------------------------------------------


def test_flipped_bit_in_mdat_reads_invalid(tmp_path, claims):
    path = _signed(tmp_path, ".mp4", claims)
    data = bytearray(path.read_bytes())
    offset, size = _top_level_boxes(bytes(data))[b"mdat"]
    data[offset + size // 2] ^= 0x01
    path.write_bytes(data)
    report = read_provenance(path)
    assert report.state == "Invalid"
    assert "assertion.bmffHash.mismatch" in report.errors


@pytest.mark.parametrize("suffix", [".mp4", ".png", ".gif"])
def test_edited_assertion_reads_invalid(tmp_path, claims, suffix):
    path = _signed(tmp_path, suffix, claims)
    data = path.read_bytes()
    assert data.count(b"cinecube-small") == 1
    path.write_bytes(data.replace(b"cinecube-small", b"cinecube-large"))  # same length: a forgery
    report = read_provenance(path)
    assert report.state == "Invalid"
    assert "assertion.hashedURI.mismatch" in report.errors
    assert report.claims["model"] == "cinecube-large"  # readable, but not to be believed


@pytest.mark.parametrize(
    "suffix, expected",
    [
        (".mp4", {"Invalid"}),  # the BMFF hash no longer matches the shortened file
        (".gif", {"Invalid", "Unreadable"}),  # Unreadable when the cut goes into the manifest
        (".png", {"Unreadable"}),  # the PNG parser stops at the cut chunk
    ],
)
def test_truncated_file_is_never_trusted(tmp_path, claims, suffix, expected):
    path = _signed(tmp_path, suffix, claims)
    data = path.read_bytes()
    for keep in (0.5, 0.99):
        cut = tmp_path / f"cut{keep}{suffix}"
        cut.write_bytes(data[: int(len(data) * keep)])
        report = read_provenance(cut)
        assert report.state in expected, (keep, report)
        assert report.errors


def test_remux_and_reencode_drop_the_manifest(tmp_path, claims):
    import av

    path = _signed(tmp_path, ".mp4", claims)
    remuxed = tmp_path / "remuxed.mp4"
    with av.open(str(path)) as src, av.open(str(remuxed), "w") as dst:
        stream_in = src.streams.video[0]
        stream_out = dst.add_stream_from_template(stream_in)
        for packet in src.demux(stream_in):
            if packet.dts is None:
                continue
            packet.stream = stream_out
            dst.mux(packet)
    frames, fps = read_video(path)
    np.testing.assert_array_equal(read_video(remuxed)[0], frames)  # the same video, bit for bit
    assert read_provenance(remuxed).state == "NoManifest"

    reencoded = write_video(tmp_path / "reencoded.mp4", frames, fps)
    assert read_provenance(reencoded).state == "NoManifest"


# ---------------------------------------------------------------------------------------------
# Trust anchors and organisation keys
# ---------------------------------------------------------------------------------------------


def test_other_installations_anchor_gives_valid_not_trusted(tmp_path, claims):
    path = _signed(tmp_path, ".mp4", claims)
    other = SigningIdentity.load_or_create(tmp_path / "other-installation")
    mine = SigningIdentity.load_or_create()
    assert other.subject != mine.subject

    report = read_provenance(path, trust_anchors_pem=other.trust_anchor_pem.decode())
    assert report.state == "Valid" and not report.verified
    assert report.errors == ["signingCredential.untrusted"]
    assert report.claims == claims  # intact, just not ours
    assert read_provenance(path, trust_anchors_pem="").state == "Valid"
    assert read_provenance(path, trust_anchors_pem=mine.trust_anchor_pem.decode()).state == "Trusted"


def test_trust_anchors_must_hold_certificates(tmp_path, claims):
    """Anchors that hold no certificate are refused, not blamed on the file's manifest."""
    path = _signed(tmp_path, ".mp4", claims)
    with pytest.raises(ProvenanceError, match="trust_anchors_pem holds no PEM certificates: no '-----BEGIN"):
        read_provenance(path, trust_anchors_pem="not a certificate")
    with pytest.raises(ProvenanceError, match="roots.pem holds no PEM certificates: a certificate block does not"):
        provenance.parse_trust_anchors("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "roots.pem")
    key_only = provenance._new_identity_pem().split(b"-----BEGIN CERTIFICATE")[0]
    with pytest.raises(ProvenanceError, match="it has PRIVATE KEY blocks but no CERTIFICATE"):
        provenance.parse_trust_anchors(key_only)

    # An identity file (key + leaf + root) gives its certificates only, and they are usable.
    identity = SigningIdentity.load_or_create()
    certs = provenance.parse_trust_anchors(identity.key_path.read_bytes())
    assert "PRIVATE" not in certs and certs.count("BEGIN CERTIFICATE") == 2
    assert read_provenance(path, trust_anchors_pem=certs).state == "Trusted"


def test_reading_a_folder_or_a_missing_file_is_refused(tmp_path):
    with pytest.raises(ProvenanceError, match="it is a folder, not a file"):
        read_provenance(tmp_path)
    with pytest.raises(ProvenanceError, match="no such file"):
        read_provenance(tmp_path / "missing.mp4")


def test_organisation_key_from_files(tmp_path, claims):
    """An organisation's SEC1 key and chain sign; only its own root makes the result Trusted."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    pem = provenance._new_identity_pem()  # stands in for a chain issued by the organisation's CA
    key = serialization.load_pem_private_key(pem, None)
    key_path, chain_path = tmp_path / "org.key", tmp_path / "org-chain.pem"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
    )  # SEC1, not PKCS#8
    certs = x509.load_pem_x509_certificates(pem)
    chain_path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs))

    org = SigningIdentity.from_files(key_path, chain_path)
    loaded = serialization.load_pem_private_key(org.key_pem, password=None)
    pkcs8 = loaded.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    assert org.key_pem == pkcs8 and org.alg == "ES256"  # converted to PKCS#8
    assert "key_pem" not in repr(org) and "PRIVATE" not in repr(org)
    path = _media(tmp_path, ".mp4")
    sign_media(path, claims, PAYLOAD, identity=org)
    assert read_provenance(path, trust_anchors_pem=org.trust_anchor_pem.decode()).state == "Trusted"
    assert read_provenance(path).state == "Valid"  # this installation's root does not vouch for it

    wrong_chain = tmp_path / "wrong-chain.pem"
    other = provenance._new_identity_pem()
    wrong_chain.write_bytes(other[other.index(b"-----BEGIN CERTIFICATE") :])  # its certificates only
    with pytest.raises(ProvenanceError, match="does not match"):
        SigningIdentity.from_files(key_path, wrong_chain)


# ---------------------------------------------------------------------------------------------
# Where keys live
# ---------------------------------------------------------------------------------------------


def test_key_is_private_and_outside_the_repository(config_dir):
    identity = SigningIdentity.load_or_create()
    assert default_config_dir() == config_dir
    assert identity.key_path == config_dir.resolve() / provenance.IDENTITY_FILE
    assert stat.S_IMODE(identity.key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(config_dir.stat().st_mode) == 0o700
    root = provenance.repository_root()
    assert root is not None  # running from the source checkout
    assert not identity.key_path.resolve().is_relative_to(root.resolve())
    # Loading again gives the same identity, and the root certificate is there to share.
    assert SigningIdentity.load_or_create().key_pem == identity.key_pem
    shared = (config_dir / provenance.ROOT_CA_FILE).read_bytes()
    assert shared == identity.trust_anchor_pem and b"PRIVATE" not in shared


def test_config_dir_inside_the_repository_is_refused(monkeypatch, tmp_path, claims):
    root = provenance.repository_root()
    assert root is not None
    inside = root / "cinecube-config-that-must-not-exist"
    monkeypatch.setenv("CINECUBE_CONFIG_DIR", str(inside))
    with pytest.raises(ProvenanceError, match="inside the cinecube repository"):
        SigningIdentity.load_or_create()
    path = _media(tmp_path, ".mp4")
    with pytest.raises(ProvenanceError, match="inside the cinecube repository"):
        sign_media(path, claims, PAYLOAD)
    assert not inside.exists()
    assert read_provenance(path, trust_anchors_pem="").state == "NoManifest"


def test_default_config_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv("CINECUBE_CONFIG_DIR")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert default_config_dir() == tmp_path / "xdg" / "cinecube"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_config_dir() == tmp_path / "home" / ".config" / "cinecube"


def test_key_readable_by_others_is_refused(config_dir):
    identity = SigningIdentity.load_or_create()
    os.chmod(identity.key_path, 0o644)
    with pytest.raises(ProvenanceError, match="chmod 600"):
        SigningIdentity.load_or_create()


def _load_identity_pem(folder: str) -> bytes:
    return SigningIdentity.load_or_create(folder).key_pem


def test_concurrent_first_use_ends_with_one_identity(tmp_path):
    folder = str(tmp_path / "shared-config")
    with multiprocessing.get_context("fork").Pool(4) as pool:
        keys = pool.map(_load_identity_pem, [folder] * 8)
    assert len(set(keys)) == 1
    assert sorted(os.listdir(folder)) == [provenance.IDENTITY_FILE, provenance.ROOT_CA_FILE]  # no temp files


# ---------------------------------------------------------------------------------------------
# Failures leave the original alone
# ---------------------------------------------------------------------------------------------


def _self_signed_identity(tmp_path) -> SigningIdentity:
    """A leaf that signs itself: the C2PA library refuses it at signing time."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "self-signed")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return SigningIdentity.from_pem(key_pem, cert.public_bytes(serialization.Encoding.PEM))


def test_failed_signing_leaves_the_original_untouched(tmp_path, claims, monkeypatch):
    path = _media(tmp_path, ".mp4")
    original = path.read_bytes()

    with pytest.raises(CinecubeError) as refused:
        sign_media(path, claims, PAYLOAD, identity=_self_signed_identity(tmp_path))
    assert "\n" not in str(refused.value) and str(path.name) in str(refused.value)

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(provenance.os, "replace", broken_replace)
        with pytest.raises(ProvenanceError, match="No space left"):
            sign_media(path, claims, PAYLOAD)

    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00\x00\x00\x18ftypisom" + os.urandom(300))
    garbage_bytes = garbage.read_bytes()
    with pytest.raises(ProvenanceError):
        sign_media(garbage, claims, PAYLOAD)

    assert path.read_bytes() == original and garbage.read_bytes() == garbage_bytes
    assert _leftovers(tmp_path) == []
    assert read_provenance(path).state == "NoManifest"


def test_bad_requests_are_refused_before_touching_the_file(tmp_path, claims):
    path = _media(tmp_path, ".mp4")
    original = path.read_bytes()
    with pytest.raises(ProvenanceError, match="prompt itself"):
        sign_media(path, {**claims, "prompt": PROMPT}, PAYLOAD)
    with pytest.raises(ProvenanceError, match="seed"):
        sign_media(path, {k: v for k, v in claims.items() if k != "seed"}, PAYLOAD)
    with pytest.raises(ProvenanceError, match="hex"):
        sign_media(path, claims, "not hex")
    with pytest.raises(ProvenanceError, match="suffix"):
        sign_media(tmp_path / "clip.webm", claims, PAYLOAD)
    with pytest.raises(ProvenanceError, match="no such file"):
        sign_media(tmp_path / "missing.mp4", claims, PAYLOAD)
    assert path.read_bytes() == original

    sign_media(path, claims, PAYLOAD)
    signed = path.read_bytes()
    with pytest.raises(ProvenanceError, match="already carries"):
        sign_media(path, claims, "ff")
    assert path.read_bytes() == signed
    assert read_provenance(path).soft_binding == PAYLOAD  # the first signature stands


def test_signing_keeps_the_file_mode(tmp_path, claims):
    path = _media(tmp_path, ".gif")
    os.chmod(path, 0o640)
    sign_media(path, claims, PAYLOAD)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


# ---------------------------------------------------------------------------------------------
# Inputs recorded as ingredients
# ---------------------------------------------------------------------------------------------

CHILD_PROMPT = "the red cube keeps spinning, then rolls off the floor"


def _child_claims(claims):
    return {**claims, "prompt_sha256": hashlib.sha256(CHILD_PROMPT.encode()).hexdigest(), "seed": 99}


def _by_title(ingredients):
    return {i.title: i for i in ingredients}


def test_inputs_are_recorded_as_ingredients_with_their_history(tmp_path, claims):
    """An unsigned image is placed, a signed cinecube video is the parent, and its manifest rides along."""
    parent = _signed(tmp_path, ".mp4", claims)
    parent_bytes = parent.read_bytes()
    still = write_video(tmp_path / "still.png", _frames(t=1, seed=3), fps=8.0)
    child = write_video(tmp_path / "extended.mp4", _frames(seed=1), fps=8.0)
    child_claims = _child_claims(claims)
    sign_media(
        child,
        child_claims,
        PAYLOAD,
        ingredients=[Ingredient(still, "componentOf"), Ingredient(str(parent), "parentOf")],
    )
    assert parent.read_bytes() == parent_bytes  # inputs are only read

    report = read_provenance(child)
    assert report.state == "Trusted" and report.errors == []  # the child reads as before
    assert report.claims == child_claims and report.soft_binding == PAYLOAD
    assert report.digital_source_type.endswith("/trainedAlgorithmicMedia")  # on c2pa.edited
    found = _by_title(report.ingredients)
    assert set(found) == {"still.png", "clip.mp4"}

    image = found["still.png"]
    assert (image.relationship, image.format, image.actions) == ("componentOf", "image/png", ["c2pa.placed"])
    assert not image.has_manifest and image.state == "NoManifest" and image.claims is None
    assert image.sha256 == hashlib.sha256(still.read_bytes()).hexdigest()

    video = found["clip.mp4"]
    assert video.relationship == "parentOf" and video.actions == ["c2pa.opened", "c2pa.edited"]
    assert video.has_manifest and video.state == "Trusted" and video.errors == []
    assert video.claims == claims and video.signer == report.signer
    assert video.claims["prompt_sha256"] == hashlib.sha256(PROMPT.encode()).hexdigest()
    assert video.claims["model"] == "cinecube-small" and video.sha256 == hashlib.sha256(parent_bytes).hexdigest()
    assert PROMPT.encode() not in child.read_bytes() and CHILD_PROMPT.encode() not in child.read_bytes()

    # The report travels as JSON (cinecube verify --json), and trust is judged at reading time.
    as_json = json.loads(json.dumps(report.to_dict()))
    assert [i["relationship"] for i in as_json["ingredients"]] == [i.relationship for i in report.ingredients]
    nobody = _by_title(read_provenance(child, trust_anchors_pem="").ingredients)["clip.mp4"]
    assert nobody.state == "Valid" and nobody.errors == ["signingCredential.untrusted"]

    # Extending the extended video keeps the whole chain.
    grandchild = write_video(tmp_path / "again.mp4", _frames(seed=2), fps=8.0)
    sign_media(grandchild, claims, None, ingredients=[Ingredient(child, "parentOf")])
    chain = read_provenance(grandchild)
    assert chain.state == "Trusted" and [i.title for i in chain.ingredients] == ["extended.mp4"]
    middle = chain.ingredients[0]
    assert middle.state == "Trusted" and middle.claims == child_claims
    assert _by_title(middle.ingredients)["clip.mp4"].claims == claims


def test_foreign_tampered_and_broken_inputs_do_not_stop_signing(tmp_path, claims):
    other = SigningIdentity.load_or_create(tmp_path / "other-installation")
    foreign = _media(tmp_path, ".mp4").rename(tmp_path / "foreign.mp4")
    sign_media(foreign, claims, PAYLOAD, identity=other)
    good = _signed(tmp_path, ".mp4", claims).read_bytes()
    tampered = tmp_path / "tampered.mp4"
    tampered.write_bytes(good.replace(b"cinecube-small", b"cinecube-large"))
    broken = tmp_path / "broken.mp4"
    jumbf = good.index(b"jumb")
    broken.write_bytes(good[:jumbf] + b"XXXX" + good[jumbf + 4 :])  # the manifest store no longer parses
    assert read_provenance(broken).state == "Unreadable" and read_provenance(tampered).state == "Invalid"
    odd = tmp_path / "photo.bmp"  # a format the C2PA library does not know: recorded all the same
    odd.write_bytes(b"BM" + bytes(64))

    child = write_video(tmp_path / "transition.mp4", _frames(seed=1), fps=8.0)
    inputs = [Ingredient(p, "componentOf") for p in (foreign, tampered, broken, odd)]
    sign_media(child, claims, PAYLOAD, ingredients=inputs)

    report = read_provenance(child)
    assert report.state == "Trusted" and report.errors == []  # an input's problems stay with the input
    assert report.digital_source_type.endswith("/trainedAlgorithmicMedia")  # no parent: c2pa.created
    found = _by_title(report.ingredients)
    assert set(found) == {"foreign.mp4", "tampered.mp4", "broken.mp4", "photo.bmp"}
    assert all(i.actions == ["c2pa.placed"] and i.relationship == "componentOf" for i in report.ingredients)
    assert found["foreign.mp4"].state == "Valid" and found["foreign.mp4"].errors == ["signingCredential.untrusted"]
    assert (
        found["foreign.mp4"].signer.startswith("CN=cinecube signer ") and found["foreign.mp4"].signer != report.signer
    )
    assert found["tampered.mp4"].state == "Invalid" and "assertion.hashedURI.mismatch" in found["tampered.mp4"].errors
    assert found["tampered.mp4"].claims["model"] == "cinecube-large"  # recorded, but not to be believed
    unreadable = found["broken.mp4"]
    assert unreadable.state == "Unreadable" and not unreadable.has_manifest
    assert len(unreadable.errors) == 1 and "JUMBF" in unreadable.errors[0]
    assert unreadable.sha256 == hashlib.sha256(broken.read_bytes()).hexdigest()
    assert found["photo.bmp"].state == "NoManifest" and found["photo.bmp"].format == "image/bmp"
    # The foreign input reads Trusted for whoever trusts its signer.
    theirs = read_provenance(child, trust_anchors_pem=other.trust_anchor_pem.decode())
    assert theirs.state == "Valid" and _by_title(theirs.ingredients)["foreign.mp4"].state == "Trusted"


def test_bad_ingredients_are_refused_before_anything_is_written(tmp_path, claims, config_dir):
    path = _media(tmp_path, ".mp4")
    original = path.read_bytes()
    still = write_video(tmp_path / "still.png", _frames(t=1), fps=8.0)
    missing = tmp_path / "nowhere" / "input.png"
    with pytest.raises(ProvenanceError) as refused:
        sign_media(
            path, claims, PAYLOAD, ingredients=[Ingredient(still, "componentOf"), Ingredient(missing, "parentOf")]
        )
    message = str(refused.value)
    assert "\n" not in message and f"ingredient '{missing}': no such file" in message
    with pytest.raises(ProvenanceError, match="it is a folder, not a file"):
        sign_media(path, claims, PAYLOAD, ingredients=[Ingredient(tmp_path, "parentOf")])
    with pytest.raises(ProvenanceError, match="at most one parentOf"):
        sign_media(path, claims, PAYLOAD, ingredients=[Ingredient(still, "parentOf"), Ingredient(path, "parentOf")])
    with pytest.raises(ProvenanceError, match="must be a sequence of Ingredient"):
        sign_media(path, claims, PAYLOAD, ingredients=Ingredient(still, "parentOf"))
    with pytest.raises(ProvenanceError, match="must be Ingredient objects, got PosixPath"):
        sign_media(path, claims, PAYLOAD, ingredients=[still])
    assert path.read_bytes() == original and _leftovers(tmp_path) == []
    assert not config_dir.exists()  # not even a signing key was made

    with pytest.raises(ProvenanceError, match="relationship must be one of parentOf, componentOf"):
        Ingredient(still, "inputTo")
    with pytest.raises(ProvenanceError, match="a componentOf ingredient is recorded with c2pa.placed"):
        Ingredient(still, "componentOf", "c2pa.opened")
    assert Ingredient(still, "parentOf").action == "c2pa.edited"
    assert Ingredient(still, "componentOf").action == "c2pa.placed"
