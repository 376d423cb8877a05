"""C2PA provenance: every video and image cinecube writes carries a signed manifest.

A manifest says, in a form any C2PA reader can check:

- ``c2pa.actions``: the asset was *created* (``c2pa.created``) by a generative model
  (IPTC digital source type ``trainedAlgorithmicMedia``);
- ``org.cinecube.generation``: which model and checkpoint made it, the SHA-256 of the
  prompt (never the prompt itself), the seed and the generation settings;
- ``c2pa.soft-binding``: the payload of the invisible watermark, so that a copy whose
  manifest was stripped (any remux or re-encode drops it) can be tied back to it;
- a hard binding (a hash of the media bytes) added by the C2PA library, so that any change
  to the pixels, the assertions or the file's length makes the manifest read ``Invalid``.

Signing keys. Each installation gets its own identity on first use: a local root CA and a
leaf certificate it signs (P-256, PKCS#8 key), written as one 0600 file in the user's config
folder (``$CINECUBE_CONFIG_DIR``, else ``$XDG_CONFIG_HOME/cinecube``, else
``~/.config/cinecube``), never inside the repository. The root CA's private key is thrown
away once the leaf is signed. An organisation signs with its own key and chain instead
(``SigningIdentity.from_files``).

Reading gives one of five states: ``Trusted`` (signed, intact, chain ends at a trust
anchor; by default this installation's root CA), ``Valid`` (signed and intact but by
someone not trusted here), ``Invalid`` (tampered), ``NoManifest``, ``Unreadable``. Only
``Trusted`` counts as made by us.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import os
import re
import secrets
import tempfile
from pathlib import Path
from typing import Any

from cinecube.errors import CinecubeError

GENERATION_LABEL = "org.cinecube.generation"
SOFT_BINDING_LABEL = "c2pa.soft-binding"
WATERMARK_ALG = "org.cinecube.watermark.v1"

IDENTITY_FILE = "signing-identity.pem"  # private key + leaf + root certificates, mode 0600
ROOT_CA_FILE = "signing-root-ca.pem"  # the root certificate alone, to share with verifiers

STATES = ("Trusted", "Valid", "Invalid", "NoManifest", "Unreadable")

# Formats cinecube writes (and a few more the C2PA library signs), by suffix.
MIME_TYPES = {
    ".mp4": "video/mp4",
    ".m4v": "video/mp4",
    ".mov": "video/quicktime",
    ".gif": "image/gif",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
}

# Claims every generation assertion must carry; the others (size, frames, steps, ...) are free.
REQUIRED_CLAIMS = ("model", "checkpoint_sha256", "prompt_sha256", "seed")

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_HEX_RE = re.compile(r"^(?:[0-9a-fA-F]{2})+$")


class ProvenanceError(CinecubeError):
    """Signing or key handling that failed; the message is one line."""


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# --------------------------------------------------------------------------------------------
# Where the keys live
# --------------------------------------------------------------------------------------------


def default_config_dir() -> Path:
    """$CINECUBE_CONFIG_DIR, else $XDG_CONFIG_HOME/cinecube, else ~/.config/cinecube."""
    override = os.environ.get("CINECUBE_CONFIG_DIR")
    if override:
        return Path(override).expanduser()
    xdg = os.environ.get("XDG_CONFIG_HOME")
    if xdg and os.path.isabs(xdg):  # the XDG spec says to ignore relative values
        return Path(xdg) / "cinecube"
    return Path.home() / ".config" / "cinecube"


def repository_root() -> Path | None:
    """The root of the cinecube git work tree this package is running from, if any.

    Only a source checkout (``<root>/src/cinecube`` next to ``<root>/.git``) counts, so an
    installed package inside some other git tree (a home folder kept in git) is not mistaken
    for the repository.
    """
    package = Path(__file__).resolve().parents[1]  # .../src/cinecube
    root = package.parent.parent
    if package.parent.name == "src" and (root / ".git").exists():
        return root
    return None


def check_config_dir(folder: str | os.PathLike) -> Path:
    """The absolute config folder, refusing one inside the cinecube repository.

    Keys there could be committed by accident, so this is an error, not a warning.
    """
    resolved = Path(folder).expanduser().resolve()
    root = repository_root()
    if root is not None and resolved.is_relative_to(root.resolve()):
        raise ProvenanceError(
            f"config folder '{resolved}' is inside the cinecube repository '{root}'; signing keys "
            f"must live outside it: set CINECUBE_CONFIG_DIR to a folder such as ~/.config/cinecube"
        )
    return resolved


def ensure_config_dir(config_dir: str | os.PathLike | None = None) -> Path:
    """The config folder (default_config_dir() unless given), created 0700 and kept private.

    Refuses a folder inside the cinecube repository (see check_config_dir).
    """
    folder = check_config_dir(config_dir or default_config_dir())
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if folder.stat().st_mode & 0o077:
            os.chmod(folder, 0o700)
    except OSError as exc:
        raise ProvenanceError(f"cannot create config folder '{folder}': {_one_line(exc)}") from exc
    return folder


def _fsync_dir(folder: Path) -> None:
    """Make a rename or link in ``folder`` durable (not possible on every platform)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# --------------------------------------------------------------------------------------------
# Signing identity
# --------------------------------------------------------------------------------------------


def _new_identity_pem() -> bytes:
    """A fresh root CA and a leaf it signs; returns PKCS#8 key + leaf + root as PEM.

    The extensions are the ones the C2PA library accepts offline: a CA with keyCertSign, and
    a leaf with digitalSignature and the emailProtection extended key usage (a self-signed
    leaf, or one without an EKU, is rejected). Names carry a random installation id and
    nothing about the user or the machine, since every signed file shows them.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    install_id = secrets.token_hex(4)
    now = datetime.datetime.now(datetime.timezone.utc)
    start = now - datetime.timedelta(hours=1)  # tolerate a little clock skew between machines

    def name(common_name: str) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "cinecube local installation"),
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            ]
        )

    def key_usage(**granted: bool) -> x509.KeyUsage:
        flags = dict.fromkeys(
            (
                "digital_signature",
                "content_commitment",
                "key_encipherment",
                "data_encipherment",
                "key_agreement",
                "key_cert_sign",
                "crl_sign",
                "encipher_only",
                "decipher_only",
            ),
            False,
        )
        return x509.KeyUsage(**{**flags, **granted})

    root_key = ec.generate_private_key(ec.SECP256R1())
    root_name = name(f"cinecube root CA {install_id}")
    root = (
        x509.CertificateBuilder()
        .subject_name(root_name)
        .issuer_name(root_name)
        .public_key(root_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(now + datetime.timedelta(days=20 * 365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(key_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False)
        .sign(root_key, hashes.SHA256())
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(name(f"cinecube signer {install_id}"))
        .issuer_name(root_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(now + datetime.timedelta(days=10 * 365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(key_usage(digital_signature=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False)
        .sign(root_key, hashes.SHA256())
    )
    key_pem = leaf_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    certs = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (leaf, root))
    return key_pem + certs


def _signing_alg(private_key: Any) -> str:
    """The C2PA algorithm name for a private key (RSA signs with PSS, as C2PA requires)."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        by_curve = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
        if private_key.curve.name in by_curve:
            return by_curve[private_key.curve.name]
        raise ValueError(f"EC curve {private_key.curve.name} is not allowed (use P-256, P-384 or P-521)")
    if isinstance(private_key, ed25519.Ed25519PrivateKey):
        return "ED25519"
    if isinstance(private_key, rsa.RSAPrivateKey):
        return "PS256"
    raise ValueError(f"{type(private_key).__name__} keys are not allowed (use EC P-256/384/521, Ed25519 or RSA)")


def _subject_text(cert: Any) -> str:
    return cert.subject.rfc4514_string()


@dataclasses.dataclass(frozen=True)
class SigningIdentity:
    """A private key and the certificate chain that vouches for it.

    key_pem: PKCS#8 private key (PEM). chain_pem: the leaf certificate first, then its
    issuers. trust_anchor_pem: the chain's last certificate when it is a self-signed root
    (what verifiers should trust), else None.
    """

    key_pem: bytes
    chain_pem: bytes
    alg: str  # "ES256", "ES384", "ES512", "PS256" or "ED25519"
    subject: str  # the leaf certificate's subject, RFC 4514 ("CN=...,O=...")
    trust_anchor_pem: bytes | None
    key_path: Path | None = None

    def __repr__(self) -> str:  # never print the key
        return f"SigningIdentity(subject={self.subject!r}, alg={self.alg}, key_path={self.key_path})"

    @classmethod
    def from_pem(cls, key_pem: bytes, chain_pem: bytes, key_path: Path | None = None) -> SigningIdentity:
        """Check a key and chain belong together; SEC1 / PKCS#1 keys are converted to PKCS#8."""
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        try:
            key = serialization.load_pem_private_key(key_pem, password=None)
        except (ValueError, TypeError) as exc:
            raise ProvenanceError(f"signing key is not an unencrypted PEM private key ({_one_line(exc)})") from exc
        try:
            certs = x509.load_pem_x509_certificates(chain_pem)
        except ValueError as exc:
            raise ProvenanceError(f"certificate chain is not PEM certificates ({_one_line(exc)})") from exc
        try:
            alg = _signing_alg(key)
        except ValueError as exc:
            raise ProvenanceError(f"signing key: {exc}") from exc
        pub = serialization.PublicFormat.SubjectPublicKeyInfo
        if key.public_key().public_bytes(serialization.Encoding.DER, pub) != certs[0].public_key().public_bytes(
            serialization.Encoding.DER, pub
        ):
            raise ProvenanceError(
                "signing key does not match the first certificate of the chain (the leaf must come first)"
            )
        last = certs[-1]
        anchor = last.public_bytes(serialization.Encoding.PEM) if last.subject == last.issuer else None
        # The C2PA library wants the key in PKCS#8 form, not SEC1 or PKCS#1.
        pkcs8 = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        chain = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)
        return cls(pkcs8, chain, alg, _subject_text(certs[0]), anchor, key_path)

    @classmethod
    def from_files(cls, key_path: str | os.PathLike, chain_path: str | os.PathLike) -> SigningIdentity:
        """An organisation's key (PEM, unencrypted) and chain (leaf first, then intermediates/root)."""
        blobs = []
        for what, path in (("signing key", key_path), ("certificate chain", chain_path)):
            try:
                blobs.append(Path(path).read_bytes())
            except OSError as exc:
                raise ProvenanceError(f"cannot read {what} '{os.fspath(path)}': {_one_line(exc)}") from exc
        try:
            return cls.from_pem(blobs[0], blobs[1], key_path=Path(key_path))
        except ProvenanceError as exc:
            where = f"key '{os.fspath(key_path)}', chain '{os.fspath(chain_path)}'"
            raise ProvenanceError(f"{exc} ({where})") from exc

    @classmethod
    def load_or_create(cls, config_dir: str | os.PathLike | None = None) -> SigningIdentity:
        """This installation's identity, created on first use in the config folder.

        Race-safe: each process writes a complete candidate to a temporary file and hard-links
        it into place, which fails if the name exists; a process that loses the race reads
        the winner's file, so all processes end with the same identity.
        """
        folder = ensure_config_dir(config_dir)
        path = folder / IDENTITY_FILE
        if not path.exists():
            _install_exclusive(path, _new_identity_pem())
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise ProvenanceError(
                f"signing key '{path}' can be read by other users (mode {mode:04o}); run `chmod 600 {path}`"
            )
        identity = cls.from_files(path, path)
        _share_root_ca(folder / ROOT_CA_FILE, identity.trust_anchor_pem)
        return identity

    def signer(self) -> Any:
        """A c2pa.Signer for this identity (offline: no timestamp authority)."""
        import c2pa

        info = c2pa.C2paSignerInfo(getattr(c2pa.C2paSigningAlg, self.alg), self.chain_pem, self.key_pem, None)
        return c2pa.Signer.from_info(info)


def _install_exclusive(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` (mode 0600) unless it exists; never a partial file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)  # 0600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(FileExistsError):  # another process won: keep its identity
            os.link(tmp, path)
    except OSError as exc:
        raise ProvenanceError(f"cannot write signing key '{path}': {_one_line(exc)}") from exc
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    _fsync_dir(path.parent)


def _share_root_ca(path: Path, anchor_pem: bytes | None) -> None:
    """Keep a copy of the root certificate beside the key, for others to add as a trust anchor."""
    if anchor_pem is None:
        return
    with contextlib.suppress(OSError):
        if path.exists() and path.read_bytes() == anchor_pem:
            return
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(anchor_pem)
            os.chmod(tmp, 0o644)  # a certificate is public
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def parse_trust_anchors(pem: str | bytes, source: str = "trust anchors") -> str:
    """The certificates of a PEM bundle of trust anchors, re-encoded as PEM text.

    Blocks other than certificates (a private key in an identity file) are left out. Raises a
    one-line ProvenanceError, "<source> holds no PEM certificates: <why>", when there is no
    certificate block or one does not parse; ``source`` names the text for that message.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    text = pem.decode("utf-8", errors="replace") if isinstance(pem, bytes) else pem
    labels = re.findall(r"-----BEGIN ([A-Z0-9 ]+)-----", text)
    if "CERTIFICATE" not in labels:
        found = ", ".join(sorted(set(labels)))
        why = f"it has {found} blocks but no CERTIFICATE" if labels else "no '-----BEGIN CERTIFICATE-----' block"
        raise ProvenanceError(f"{source} holds no PEM certificates: {why}")
    try:
        certs = x509.load_pem_x509_certificates(text.encode("utf-8"))
    except ValueError as exc:
        raise ProvenanceError(
            f"{source} holds no PEM certificates: a certificate block does not parse ({_one_line(exc)})"
        ) from exc
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode("ascii") for c in certs)


def local_trust_anchor_pem(config_dir: str | os.PathLike | None = None) -> str | None:
    """This installation's root certificate (PEM), or None before the first signing."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    path = check_config_dir(config_dir or default_config_dir()) / IDENTITY_FILE
    try:
        certs = x509.load_pem_x509_certificates(path.read_bytes())
    except (OSError, ValueError):
        return None
    return certs[-1].public_bytes(serialization.Encoding.PEM).decode("ascii")


# --------------------------------------------------------------------------------------------
# Claims
# --------------------------------------------------------------------------------------------


def prompt_sha256(prompt: str) -> str:
    """SHA-256 (hex) of the prompt's UTF-8 bytes: what manifests and logs record instead of it."""
    import hashlib

    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()


def generation_claims(
    *,
    model: str,
    checkpoint_sha256: str,
    prompt: str,
    seed: int,
    height: int | None = None,
    width: int | None = None,
    frames: int | None = None,
    steps: int | None = None,
    guidance: float | None = None,
    fps: float | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The ``org.cinecube.generation`` assertion for one request (the prompt is hashed here).

    Settings left as None are omitted; ``extra`` (sampler, request id, ...) is kept as given.
    """
    from cinecube import __version__

    claims: dict[str, Any] = {
        "model": model,
        "checkpoint_sha256": checkpoint_sha256,
        "prompt_sha256": prompt_sha256(prompt),
        "seed": int(seed),
    }
    settings = {"height": height, "width": width, "frames": frames, "steps": steps}
    claims.update({k: int(v) for k, v in settings.items() if v is not None})
    claims.update({k: float(v) for k, v in (("guidance", guidance), ("fps", fps)) if v is not None})
    claims["cinecube_version"] = __version__
    claims.update(extra)
    return claims


def _check_claims(claims: Any) -> dict[str, Any]:
    from cinecube import __version__

    if not isinstance(claims, dict):
        raise ProvenanceError(f"claims must be a dict, got {type(claims).__name__}")
    if "prompt" in claims:
        raise ProvenanceError("claims must not contain the prompt itself; record prompt_sha256 instead")
    missing = [k for k in REQUIRED_CLAIMS if k not in claims]
    if missing:
        raise ProvenanceError(f"claims lack {', '.join(missing)} (required: {', '.join(REQUIRED_CLAIMS)})")
    for key in ("checkpoint_sha256", "prompt_sha256"):
        if not (isinstance(claims[key], str) and _SHA256_RE.match(claims[key])):
            raise ProvenanceError(f"claims['{key}'] must be 64 lowercase hex digits, got {claims[key]!r:.80}")
    claims = {**claims, "cinecube_version": claims.get("cinecube_version", __version__)}
    try:
        json.dumps(claims, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ProvenanceError(f"claims must be plain JSON values: {_one_line(exc)}") from exc
    return claims


def _manifest(title: str, claims: dict[str, Any], payload_hex: str | None, alg: str) -> dict[str, Any]:
    from cinecube import __version__

    assertions: list[dict[str, Any]] = [{"label": GENERATION_LABEL, "data": claims}]
    if payload_hex is not None:
        # C2PA soft binding: the value is algorithm-specific text; ours is the payload in hex.
        assertions.append(
            {
                "label": SOFT_BINDING_LABEL,
                "data": {"alg": alg, "blocks": [{"scope": {}, "value": payload_hex}], "pad": []},
            }
        )
    return {
        "claim_generator_info": [{"name": "cinecube", "version": __version__}],
        "title": title,
        "assertions": assertions,
    }


# --------------------------------------------------------------------------------------------
# Signing
# --------------------------------------------------------------------------------------------


def sign_media(
    path: str | os.PathLike,
    claims: dict[str, Any],
    watermark_payload_hex: str | None,
    identity: SigningIdentity | None = None,
    *,
    watermark_alg: str = WATERMARK_ALG,
    title: str | None = None,
) -> None:
    """Sign a freshly written mp4 / gif / png in place with a C2PA manifest.

    The signed copy goes to a temporary file in the same folder, is fsynced, then renamed
    over the original; on any failure the original is left as it was, no temporary file
    remains, and a one-line ProvenanceError says why. Files that already carry a manifest are
    refused (re-signing would replace the first record). ``identity`` defaults to this
    installation's (created on first use). ``title`` names the asset in the manifest (default:
    the file name; pass the final name when signing a temporary file before renaming it).
    """
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix not in MIME_TYPES:
        raise ProvenanceError(
            f"cannot sign '{target}': unknown suffix '{target.suffix}'; use one of {', '.join(MIME_TYPES)}"
        )
    if not target.is_file():
        raise ProvenanceError(f"cannot sign '{target}': no such file")
    claims = _check_claims(claims)
    if watermark_payload_hex is not None:
        if not (isinstance(watermark_payload_hex, str) and _HEX_RE.match(watermark_payload_hex)):
            raise ProvenanceError(
                f"watermark payload must be a non-empty hex string of whole bytes, got {watermark_payload_hex!r:.80}"
            )
        watermark_payload_hex = watermark_payload_hex.lower()
    if identity is None:
        identity = SigningIdentity.load_or_create()

    import c2pa

    target = target.resolve()  # replace the file itself, not a symlink to it
    existing = read_provenance(target, trust_anchors_pem="")
    if existing.state != "NoManifest":
        problem = (
            "it already carries a C2PA manifest"
            if existing.state != "Unreadable"
            else f"it cannot be parsed ({'; '.join(existing.errors)})"
        )
        raise ProvenanceError(f"cannot sign '{target}': {problem}")

    manifest = _manifest(title or target.name, claims, watermark_payload_hex, watermark_alg)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".sign{suffix}", dir=target.parent)
    except OSError as exc:
        raise ProvenanceError(f"cannot sign '{target}': {_one_line(exc)}") from exc
    try:
        with os.fdopen(fd, "w+b") as dst, open(target, "rb") as src:
            # No thumbnail: it would copy the picture into the manifest (a GIF grew 15x and
            # took seconds to sign), and the media itself is right there.
            settings = c2pa.Settings.from_dict({"builder": {"thumbnail": {"enabled": False}}})
            builder = c2pa.Builder(manifest, c2pa.Context(settings=settings))
            builder.set_intent(c2pa.C2paBuilderIntent.CREATE, c2pa.C2paDigitalSourceType.TRAINED_ALGORITHMIC_MEDIA)
            builder.sign(identity.signer(), MIME_TYPES[suffix], src, dst)
            dst.flush()
            os.fsync(dst.fileno())
        os.chmod(tmp, target.stat().st_mode & 0o777)  # keep the original's permissions
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, Exception):
            raise ProvenanceError(f"cannot sign '{target}': {_one_line(exc)}") from exc
        raise  # KeyboardInterrupt and friends: cleaned up, then passed on
    _fsync_dir(target.parent)


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class ProvenanceReport:
    """What a file's C2PA manifest says and whether it holds.

    state: one of STATES. claims: the org.cinecube.generation assertion (None if absent);
    only meaningful when state is Trusted (an Invalid file's claims may be forged).
    soft_binding: the watermark payload hex from the c2pa.soft-binding assertion of our
    algorithm. signer: the signing certificate's subject ("CN=..., O=..."). errors: C2PA
    validation failure codes (e.g. "assertion.bmffHash.mismatch"), or a one-line reason for
    Unreadable.
    """

    path: str
    state: str
    claims: dict[str, Any] | None = None
    soft_binding: str | None = None
    soft_binding_alg: str | None = None
    signer: str | None = None
    digital_source_type: str | None = None
    title: str | None = None
    errors: list[str] = dataclasses.field(default_factory=list)

    @property
    def verified(self) -> bool:
        """True only for an intact manifest signed under a trusted anchor."""
        return self.state == "Trusted"

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "verified": self.verified}


def _reader_context(trust_anchors_pem: str | None) -> Any:
    import c2pa

    settings: dict[str, Any] = {"verify": {"verify_trust": True}}
    if trust_anchors_pem:
        settings["trust"] = {"trust_anchors": trust_anchors_pem}
    return c2pa.Context(settings=c2pa.Settings.from_dict(settings))


def read_provenance(path: str | os.PathLike, trust_anchors_pem: str | None = None) -> ProvenanceReport:
    """Read and validate a file's C2PA manifest.

    trust_anchors_pem: PEM root certificates to trust; None means this installation's root
    CA (if it has signed anything yet), "" means trust nobody (signed files read Valid).
    Raises ProvenanceError only for a path that is not a file and for trust anchors that hold
    no PEM certificates (see parse_trust_anchors); everything about the content is in the
    report.
    """
    import c2pa

    p = Path(path)
    if not p.is_file():
        problem = "it is a folder, not a file" if p.is_dir() else "no such file"
        raise ProvenanceError(f"cannot read provenance of '{p}': {problem}")
    if trust_anchors_pem is None:
        trust_anchors_pem = local_trust_anchor_pem()
    elif trust_anchors_pem:
        # Checked here: the C2PA library would fail on every file, and the report would blame
        # the file's manifest rather than the anchors.
        trust_anchors_pem = parse_trust_anchors(trust_anchors_pem, "trust_anchors_pem")
    mime = MIME_TYPES.get(p.suffix.lower())  # None: let the library detect the format
    report = ProvenanceReport(path=str(p), state="Unreadable")
    try:
        with open(p, "rb") as f, c2pa.Reader(mime, f, context=_reader_context(trust_anchors_pem)) as reader:
            store = json.loads(reader.json())
            state = reader.get_validation_state() or "Invalid"
            results = reader.get_validation_results() or {}
    except c2pa.C2paError.ManifestNotFound:
        report.state = "NoManifest"
        return report
    except (c2pa.C2paError, OSError, ValueError) as exc:
        report.errors = [_one_line(exc)]
        return report

    report.state = state if state in ("Trusted", "Valid") else "Invalid"
    failures = (results.get("activeManifest") or {}).get("failure") or []
    report.errors = [item.get("code", "unknown") for item in failures]
    for item in store.get("validation_status") or []:  # problems outside the active manifest
        if item.get("code") and item["code"] not in report.errors:
            report.errors.append(item["code"])

    manifest = (store.get("manifests") or {}).get(store.get("active_manifest") or "", {})
    report.title = manifest.get("title")
    info = manifest.get("signature_info") or {}
    # c2pa-rs reports the leaf's subject CN as common_name and its subject O as "issuer".
    parts = [f"CN={info['common_name']}"] if info.get("common_name") else []
    parts += [f"O={info['issuer']}"] if info.get("issuer") else []
    report.signer = ", ".join(parts) or None
    for assertion in manifest.get("assertions") or []:
        label, data = assertion.get("label", ""), assertion.get("data")
        if label == GENERATION_LABEL and isinstance(data, dict):
            report.claims = data
        elif label == SOFT_BINDING_LABEL and isinstance(data, dict):
            if report.soft_binding is None or data.get("alg") == WATERMARK_ALG:
                blocks = data.get("blocks") or [{}]
                report.soft_binding = blocks[0].get("value")
                report.soft_binding_alg = data.get("alg")
        elif label.startswith("c2pa.actions") and isinstance(data, dict):
            for action in data.get("actions") or []:
                if action.get("action") == "c2pa.created":
                    report.digital_source_type = action.get("digitalSourceType")
    return report
