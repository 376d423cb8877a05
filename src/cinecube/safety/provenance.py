"""C2PA provenance: every video and image cinecube writes carries a signed manifest.

A manifest says, in a form any C2PA reader can check:

- ``c2pa.actions``: the asset was *created* (``c2pa.created``) by a generative model
  (IPTC digital source type ``trainedAlgorithmicMedia``);
- ``org.cinecube.generation``: which model and checkpoint made it, the SHA-256 of the
  prompt (never the prompt itself), the seed and the generation settings;
- ``c2pa.soft-binding``: the payload of the invisible watermark, so that a copy whose
  manifest was stripped (any remux or re-encode drops it) can be tied back to it;
- a hard binding (a hash of the media bytes) added by the C2PA library, so that any change
  to the pixels, the assertions or the file's length makes the manifest read ``Invalid``;
- for outputs made from input media (an animated image, an extended, connected, edited or
  reconstructed video), one C2PA ingredient per input (``Ingredient``): its file name, format,
  SHA-256 and relationship, with the input's own manifest embedded when it carries one, so
  that the history of a cinecube video survives extending or editing it.

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
from collections.abc import Sequence
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

TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"

# How an input was used, and the action recorded for it, by C2PA ingredient relationship:
# "parentOf" is the one asset an output was edited from (edit, extend, reconstruct), recorded
# as c2pa.opened (added by the C2PA library, which the spec requires first) then c2pa.edited;
# "componentOf" is an input placed in a new work (an animated image, the clips of a
# transition), recorded as c2pa.placed.
INGREDIENT_ACTIONS = {"parentOf": ("c2pa.edited",), "componentOf": ("c2pa.placed",)}
INGREDIENT_SHA256_KEY = "org.cinecube.sha256"  # ingredient metadata: the input file's SHA-256

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
# Ingredients: the input media an output was made from
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Ingredient:
    """An input image or video an output was made from, to record in the output's manifest.

    path: the input file as the user gave it. relationship: "parentOf" for the one input the
    output was edited, extended or reconstructed from, "componentOf" for inputs placed in a
    new work (an animated image, the two clips of a transition). action: the C2PA action to
    record for it, one of INGREDIENT_ACTIONS[relationship]; None means the first of them
    ("c2pa.edited" for a parent, "c2pa.placed" for a component).
    """

    path: str | os.PathLike
    relationship: str
    action: str | None = None

    def __post_init__(self) -> None:
        if self.relationship not in INGREDIENT_ACTIONS:
            raise ProvenanceError(
                f"ingredient '{os.fspath(self.path)}': relationship must be one of "
                f"{', '.join(INGREDIENT_ACTIONS)}, got {self.relationship!r:.80}"
            )
        allowed = INGREDIENT_ACTIONS[self.relationship]
        if self.action is None:
            object.__setattr__(self, "action", allowed[0])
        elif self.action not in allowed:
            raise ProvenanceError(
                f"ingredient '{os.fspath(self.path)}': a {self.relationship} ingredient is recorded with "
                f"{' or '.join(allowed)}, not {self.action!r:.80}"
            )


@dataclasses.dataclass(frozen=True)
class _PreparedIngredient:
    ingredient: Ingredient
    path: Path
    label: str  # pairs the ingredient with its actions while building; the library renames it
    mime: str
    sha256: str

    def definition(self) -> dict[str, Any]:
        # The title is the file name only: the folders it came from may name the user.
        return {
            "title": self.path.name,
            "format": self.mime,
            "relationship": self.ingredient.relationship,
            "label": self.label,
            "metadata": {INGREDIENT_SHA256_KEY: self.sha256},
        }


def _prepare_ingredients(ingredients: Sequence[Ingredient], target: Path) -> list[_PreparedIngredient]:
    """Check every ingredient and hash its file, before anything is written."""
    import hashlib
    import mimetypes

    if isinstance(ingredients, (str, bytes, os.PathLike, Ingredient)):
        raise ProvenanceError(f"cannot sign '{target}': ingredients must be a sequence of Ingredient")
    prepared = []
    for index, ingredient in enumerate(ingredients):
        if not isinstance(ingredient, Ingredient):
            raise ProvenanceError(
                f"cannot sign '{target}': ingredients must be Ingredient objects, got {type(ingredient).__name__}"
            )
        given = os.fspath(ingredient.path)
        path = Path(given)
        if not path.is_file():
            problem = "it is a folder, not a file" if path.is_dir() else "no such file"
            raise ProvenanceError(f"cannot sign '{target}': ingredient '{given}': {problem}")
        try:
            with open(path, "rb") as f:
                digest = hashlib.file_digest(f, "sha256").hexdigest()
        except OSError as exc:
            raise ProvenanceError(f"cannot sign '{target}': ingredient '{given}': {_one_line(exc)}") from exc
        mime = MIME_TYPES.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        prepared.append(_PreparedIngredient(ingredient, path, f"ingredient-{index}", mime, digest))
    parents = [p.path.name for p in prepared if p.ingredient.relationship == "parentOf"]
    if len(parents) > 1:
        raise ProvenanceError(
            f"cannot sign '{target}': an output has at most one parentOf ingredient, got {len(parents)} "
            f"({', '.join(parents)}); record the others as componentOf"
        )
    return prepared


class _UnreadableIngredient(Exception):
    def __init__(self, index: int, reason: str):
        super().__init__(reason)
        self.index, self.reason = index, reason


def _new_builder(
    manifest: dict[str, Any],
    context: Any,
    prepared: list[_PreparedIngredient],
    unreadable: dict[int, str],
) -> Any:
    """A c2pa.Builder for the manifest, with its ingredients and the actions that use them.

    Each ingredient is added from its file, so the library records its format and, when the
    file carries a manifest, embeds that manifest with its validation results (a format the
    library does not know is recorded as an input without a manifest). Ingredients in
    ``unreadable`` (index -> the library's reason) are recorded from their description alone,
    their manifest marked as failed; raises _UnreadableIngredient for the first other one the
    library cannot read.

    Intent: with no parent the output is created (c2pa.created, trainedAlgorithmicMedia, as
    for every generated output) and its inputs placed in it. An output with a parentOf
    ingredient cannot say c2pa.created: the C2PA spec reserves that for assets without a
    parent, and the library refuses a parent under the create intent. It gets the edit
    intent instead (c2pa.opened of the parent, added by the library as the spec requires),
    then c2pa.edited of the parent with digitalSourceType trainedAlgorithmicMedia: the model
    made the new content. Both forms read Trusted under the library's validation.
    """
    import c2pa

    described = []
    for index, reason in unreadable.items():
        # The spec's catch-all failure code, with the library's reason as the explanation.
        failure = {"code": "general.error", "explanation": f"ingredient manifest unreadable: {reason}"}
        results = {"activeManifest": {"success": [], "informational": [], "failure": [failure]}}
        described.append({**prepared[index].definition(), "validation_results": results})
    builder = c2pa.Builder({**manifest, "ingredients": described} if described else manifest, context)
    try:
        parent = next((p for p in prepared if p.ingredient.relationship == "parentOf"), None)
        if parent is None:
            builder.set_intent(c2pa.C2paBuilderIntent.CREATE, c2pa.C2paDigitalSourceType.TRAINED_ALGORITHMIC_MEDIA)
        else:
            builder.set_intent(c2pa.C2paBuilderIntent.EDIT)
        for index, item in enumerate(prepared):
            if index in unreadable:
                continue
            with open(item.path, "rb") as f:
                try:
                    builder.add_ingredient(item.definition(), item.mime, f)
                except c2pa.C2paError as exc:
                    raise _UnreadableIngredient(index, _one_line(exc)) from exc
        for item in prepared:
            action: dict[str, Any] = {"action": item.ingredient.action, "parameters": {"ingredientIds": [item.label]}}
            if item is parent:
                action["digitalSourceType"] = TRAINED_ALGORITHMIC_MEDIA
            builder.add_action(action)
    except BaseException:
        builder.close()
        raise
    return builder


def _builder_with_ingredients(manifest: dict[str, Any], context: Any, prepared: list[_PreparedIngredient]) -> Any:
    """_new_builder, recording inputs whose manifest the library cannot read without it.

    A broken manifest on an input must not stop the output from being signed: such an input
    is still an ingredient (title, format, SHA-256), with the library's reason as the failure
    of its manifest's validation.
    """
    unreadable: dict[int, str] = {}
    while True:  # each round adds one index, so this ends
        try:
            return _new_builder(manifest, context, prepared, unreadable)
        except _UnreadableIngredient as exc:
            unreadable[exc.index] = exc.reason


def _signing_trust_anchors(identity: SigningIdentity) -> str | None:
    """The anchors the signer checks ingredient manifests against: its own root and this installation's."""
    pems = []
    with contextlib.suppress(ProvenanceError):
        pems.append(local_trust_anchor_pem())
    if identity.trust_anchor_pem is not None:
        pems.append(identity.trust_anchor_pem.decode("ascii"))
    unique = list(dict.fromkeys(p for p in pems if p))
    return "".join(unique) or None


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
    ingredients: Sequence[Ingredient] = (),
) -> None:
    """Sign a freshly written mp4 / gif / png in place with a C2PA manifest.

    The signed copy goes to a temporary file in the same folder, is fsynced, then renamed
    over the original; on any failure the original is left as it was, no temporary file
    remains, and a one-line ProvenanceError says why. Files that already carry a manifest are
    refused (re-signing would replace the first record). ``identity`` defaults to this
    installation's (created on first use). ``title`` names the asset in the manifest (default:
    the file name; pass the final name when signing a temporary file before renaming it).

    ``ingredients``: the input images and videos the output was made from (see Ingredient).
    Each is recorded with its relationship and action; an input that carries a manifest (a
    cinecube output, or anyone's) has that manifest embedded, so its history stays readable
    through the output's. Inputs without a manifest are recorded by name, format and SHA-256,
    and an input whose manifest is broken does not stop the signing (it is recorded as
    unreadable). A missing ingredient file is refused before anything is written.
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
    prepared = _prepare_ingredients(ingredients, target)
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
            settings: dict[str, Any] = {"builder": {"thumbnail": {"enabled": False}}}
            if prepared:
                # Ingredient manifests are validated as they are added, and the results kept
                # in the output's manifest: check them against the anchors this signer trusts.
                settings["verify"] = {"verify_trust": True}
                anchors = _signing_trust_anchors(identity)
                if anchors:
                    settings["trust"] = {"trust_anchors": anchors}
            context = c2pa.Context(settings=c2pa.Settings.from_dict(settings))
            with _builder_with_ingredients(manifest, context, prepared) as builder:
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
class IngredientReport:
    """One input a file was made from, as its manifest records it.

    title, format, relationship ("parentOf" / "componentOf"): as recorded. actions: the
    actions of the file's manifest that name this input (a parent reads ["c2pa.opened",
    "c2pa.edited"], a placed input ["c2pa.placed"]). sha256: the input file's SHA-256 as
    cinecube recorded it (None for ingredients recorded by others). has_manifest: whether
    the input carried a manifest that is embedded in the file. state: one of STATES, for
    that embedded manifest: checked when the input was added and again now, under the trust
    anchors the file is read with; "NoManifest" for an input without one, "Unreadable" for
    one whose manifest could not be read when it was added. errors: the failure codes of
    its validation (a one-line reason for Unreadable). claims: its org.cinecube.generation
    assertion when it is a cinecube output (meaningful only when state is Trusted); signer:
    who signed it. ingredients: the inputs its own manifest records, and so on down the chain.
    """

    title: str | None
    relationship: str | None
    format: str | None = None
    actions: list[str] = dataclasses.field(default_factory=list)
    sha256: str | None = None
    has_manifest: bool = False
    state: str = "NoManifest"
    errors: list[str] = dataclasses.field(default_factory=list)
    claims: dict[str, Any] | None = None
    signer: str | None = None
    ingredients: list[IngredientReport] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class ProvenanceReport:
    """What a file's C2PA manifest says and whether it holds.

    state: one of STATES. claims: the org.cinecube.generation assertion (None if absent);
    only meaningful when state is Trusted (an Invalid file's claims may be forged).
    soft_binding: the watermark payload hex from the c2pa.soft-binding assertion of our
    algorithm. signer: the signing certificate's subject ("CN=..., O=..."). digital_source_type:
    the IPTC source type of the c2pa.created action (of c2pa.edited for an output edited from
    a parent). errors: C2PA validation failure codes (e.g. "assertion.bmffHash.mismatch"), or
    a one-line reason for Unreadable. ingredients: the input media the file was made from
    (see IngredientReport), in the manifest's order (cinecube puts inputs whose manifest was
    unreadable first); a problem with an input's manifest is reported there, not in state or
    errors.
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
    ingredients: list[IngredientReport] = dataclasses.field(default_factory=list)

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


def _actions(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for assertion in manifest.get("assertions") or []:
        data = assertion.get("data")
        if str(assertion.get("label", "")).startswith("c2pa.actions") and isinstance(data, dict):
            found += [a for a in data.get("actions") or [] if isinstance(a, dict)]
    return found


def _signer(manifest: dict[str, Any]) -> str | None:
    info = manifest.get("signature_info") or {}
    # c2pa-rs reports the leaf's subject CN as common_name and its subject O as "issuer".
    parts = [f"CN={info['common_name']}"] if info.get("common_name") else []
    parts += [f"O={info['issuer']}"] if info.get("issuer") else []
    return ", ".join(parts) or None


def _generation_claims(manifest: dict[str, Any]) -> dict[str, Any] | None:
    for assertion in manifest.get("assertions") or []:
        if assertion.get("label") == GENERATION_LABEL and isinstance(assertion.get("data"), dict):
            return assertion["data"]
    return None


def _codes(items: Any) -> list[str]:
    return [item.get("code", "unknown") for item in items or [] if isinstance(item, dict)]


def _ingredient_reports(
    store: dict[str, Any], manifest_label: str, deltas: dict[str, dict[str, Any]], seen: frozenset[str]
) -> list[IngredientReport]:
    """The ingredients of one manifest of the store, with their own ingredients below them.

    An ingredient's validation combines the results recorded when it was added with the
    deltas the library reports on reading (keyed by the ingredient assertion's URI): a
    manifest that was untrusted then may be trusted now, and the other way round.
    """
    manifests = store.get("manifests") or {}
    manifest = manifests.get(manifest_label) or {}
    by_label: dict[str, list[str]] = {}
    for action in _actions(manifest):
        for ref in (action.get("parameters") or {}).get("ingredients") or []:
            url = ref.get("url", "") if isinstance(ref, dict) else ""
            by_label.setdefault(url.rsplit("/", 1)[-1], []).append(action.get("action", "unknown"))
    reports = []
    for ingredient in manifest.get("ingredients") or []:
        label = ingredient.get("label") or ""
        report = IngredientReport(
            title=ingredient.get("title"),
            relationship=ingredient.get("relationship"),
            format=ingredient.get("format"),
            actions=by_label.get(label, []),
            sha256=(ingredient.get("metadata") or {}).get(INGREDIENT_SHA256_KEY),
        )
        recorded = (ingredient.get("validation_results") or {}).get("activeManifest") or {}
        delta = deltas.get(f"self#jumbf=/c2pa/{manifest_label}/c2pa.assertions/{label}") or {}
        success = _codes(recorded.get("success")) + _codes(delta.get("success"))
        failures = list(dict.fromkeys(_codes(recorded.get("failure")) + _codes(delta.get("failure"))))
        if "signingCredential.untrusted" in _codes(delta.get("failure")):
            success = [c for c in success if c != "signingCredential.trusted"]
        elif "signingCredential.trusted" in _codes(delta.get("success")):
            failures = [c for c in failures if c != "signingCredential.untrusted"]

        child = ingredient.get("active_manifest")
        report.has_manifest = bool(child) and child in manifests
        if report.has_manifest:
            if any(c != "signingCredential.untrusted" for c in failures):
                report.state = "Invalid"
            elif "signingCredential.trusted" in success and "signingCredential.untrusted" not in failures:
                report.state = "Trusted"
            else:
                report.state = "Valid"
            report.errors = failures
            report.claims = _generation_claims(manifests[child])
            report.signer = _signer(manifests[child])
            if child not in seen:  # a store is a tree, but never trust a file to be one
                report.ingredients = _ingredient_reports(store, child, deltas, seen | {child})
        elif failures:
            report.state = "Unreadable"
            explained = [i.get("explanation") or i.get("code", "unknown") for i in recorded.get("failure") or []]
            report.errors = explained or failures
        reports.append(report)
    return reports


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

    active = store.get("active_manifest") or ""
    manifest = (store.get("manifests") or {}).get(active, {})
    report.title = manifest.get("title")
    report.signer = _signer(manifest)
    report.claims = _generation_claims(manifest)
    for assertion in manifest.get("assertions") or []:
        label, data = assertion.get("label", ""), assertion.get("data")
        first_or_ours = report.soft_binding is None or (isinstance(data, dict) and data.get("alg") == WATERMARK_ALG)
        if label == SOFT_BINDING_LABEL and isinstance(data, dict) and first_or_ours:
            blocks = data.get("blocks") or [{}]
            report.soft_binding = blocks[0].get("value")
            report.soft_binding_alg = data.get("alg")
    actions = _actions(manifest)
    created = [a for a in actions if a.get("action") == "c2pa.created"]
    sourced = [a for a in created + actions if a.get("digitalSourceType")]
    report.digital_source_type = sourced[0]["digitalSourceType"] if sourced else None
    deltas = {
        d["ingredientAssertionURI"]: d.get("validationDeltas") or {}
        for d in results.get("ingredientDeltas") or []
        if isinstance(d, dict) and d.get("ingredientAssertionURI")
    }
    report.ingredients = _ingredient_reports(store, active, deltas, frozenset({active}))
    return report
