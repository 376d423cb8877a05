"""`cinecube verify FILE [--json] [--trust ROOTS.pem]`: is this video one cinecube made?

Three independent pieces of evidence, strongest first:
  * the C2PA manifest, in one of five states: `Trusted` (intact, signed under this
    installation's root or a trust anchor given with --trust) counts as signed by us;
    `Valid` is intact and signed, but by a signer not trusted here (another installation, an
    organisation whose root was not given with --trust), so it vouches for nothing on its
    own; `Invalid` means the file was altered after signing; `NoManifest` is what a
    re-encode, remux or metadata strip leaves; `Unreadable` is a manifest the C2PA library
    cannot parse (its reason is shown);
  * the invisible watermark: survives re-encoding, resizing and remuxing that strip the
    manifest; reported with its payload and p-value. Its key belongs to the model, not to
    the installation, so it says cinecube made the frames whoever signed the file;
  * the detector: a score from the pixels alone, a hint, never proof.
The manifest is read before the frames are decoded, so a damaged file whose video no longer
decodes still gets the manifest's verdict (with no watermark or detector evidence).

Exit status:
  0  verified as ours: a `Trusted` manifest (whose watermark binding, if any, matches the
     frames); or, without one, our watermark in the frames while the manifest is gone
     (`NoManifest`), cannot be read (`Unreadable`), or is `Valid` but signed by a signer not
     trusted here and binds no other watermark.
  1  not verified: a manifest that fails validation (`Invalid`), whatever the watermark says;
     a manifest that binds a different watermark from the one in the frames; no `Trusted`
     manifest and no watermark, which includes a `Valid` manifest alone (pass --trust with
     the signer's root certificate to accept its signer) and frames that cannot be decoded
     under a manifest that is not `Trusted`.
  2  unusable input, before any verdict: a --trust file that is missing, a folder, not UTF-8
     text or holds no PEM certificates (checked before anything else); a FILE that is
     missing or a folder, or whose media cannot be decoded while it has no manifest that
     can be read (`NoManifest` or `Unreadable`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

TRUST_HINT = "pass --trust PEM with that signer's root certificate to trust it"


def register(commands: argparse._SubParsersAction, eval_commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("verify", help="tell whether a video or image was made by cinecube")
    p.add_argument("file")
    p.add_argument("--json", action="store_true", help="print the full report as JSON")
    p.add_argument(
        "--trust", default=None, help="PEM file of root certificates to trust (default: this installation's own)"
    )
    p.set_defaults(func=cmd_verify)


def read_trust_file(path: str | Path) -> str:
    """The certificates of a --trust file as PEM text; a one-line CinecubeError naming --trust
    when it is missing, a folder, unreadable, not UTF-8 text or holds no PEM certificates."""
    from ..errors import CinecubeError
    from ..safety.provenance import ProvenanceError, parse_trust_anchors

    where = f"--trust '{path}'"
    p = Path(path)
    if not p.exists():
        raise CinecubeError(f"{where} does not exist; give a PEM file of root certificates")
    if p.is_dir():
        raise CinecubeError(f"{where} is a folder; give a PEM file of root certificates")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise CinecubeError(f"{where} cannot be read: {exc.strerror or type(exc).__name__}") from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise CinecubeError(
            f"{where} is not UTF-8 text; it must hold PEM certificates "
            f"(convert a DER certificate with `openssl x509 -inform der -in CERT -out CERT.pem`)"
        ) from None
    try:
        return parse_trust_anchors(text, where)
    except ProvenanceError as exc:
        raise CinecubeError(str(exc)) from None


def _check_file(path: str | Path) -> Path:
    from ..errors import VideoIOError

    p = Path(path)
    if not p.exists():
        raise VideoIOError(f"cannot read '{path}': file does not exist")
    if p.is_dir():
        raise VideoIOError(f"cannot read '{path}': it is a folder, not a file")
    if not p.is_file():
        raise VideoIOError(f"cannot read '{path}': it is not a regular file")
    return p


def _verdict(provenance: Any, payload: str | None, p_value: float | None, decoded: bool, hint: str) -> tuple[bool, str]:
    """(verified, one-line verdict) from the manifest and the watermark payload found (or None).

    ``decoded``: whether the frames could be decoded (else there is no watermark or detector
    evidence). ``hint``: the detector's remark, "" when it has none.
    """
    state = provenance.state
    bound = provenance.soft_binding
    mismatch = bool(payload and bound and payload.replace("-", "").lower() != bound.lower())
    by_watermark = f"VERIFIED by watermark: cinecube payload {payload}, p = {p_value:.1e}" if payload else ""
    no_frames = "the frames could not be decoded, so there is no watermark or detector evidence"

    if state == "Invalid":
        verdict = "NOT VERIFIED: the C2PA manifest fails validation (the file was altered after signing)"
        if payload:
            verdict += f"; the cinecube watermark {payload} is present"
        elif not decoded:
            verdict += f"; {no_frames}"
        return False, verdict
    if state == "Trusted":
        if mismatch:
            return False, (
                f"NOT VERIFIED: the manifest is Trusted but binds watermark {bound} while the frames carry {payload}"
            )
        verdict = "VERIFIED: signed by cinecube (C2PA Trusted)"
        if payload:
            verdict += f" and the watermark matches ({payload})"
        elif not decoded:
            verdict += "; the frames could not be decoded, so the watermark was not checked"
        return True, verdict
    if state == "Valid":
        signer = f"'{provenance.signer}'" if provenance.signer else "an unknown signer"
        untrusted = f"the C2PA manifest is intact and signed, but by {signer}, which this installation does not trust"
        if mismatch:
            return False, f"NOT VERIFIED: {untrusted}, and it binds watermark {bound} while the frames carry {payload}"
        if payload:
            return True, f"{by_watermark} ({untrusted}; {TRUST_HINT})"
        evidence = "there is no cinecube watermark" if decoded else no_frames
        return False, f"NOT VERIFIED: {untrusted}, and {evidence}{hint}; {TRUST_HINT}"
    # NoManifest and Unreadable reach here only with decoded frames (else VideoIOError).
    if state == "Unreadable":
        reason = "; ".join(provenance.errors) or "no reason given"
        if payload:
            return True, f"{by_watermark} (the C2PA manifest could not be read: {reason})"
        return (
            False,
            f"NOT VERIFIED: the C2PA manifest could not be read ({reason}) and there is no cinecube watermark{hint}",
        )
    # NoManifest: the only state that a re-encode or a metadata strip explains.
    if payload:
        return True, f"{by_watermark} (no C2PA manifest: the file was re-encoded or its metadata stripped)"
    return False, f"NOT VERIFIED: no C2PA manifest and no cinecube watermark{hint}"


def verify_file(path: str | Path, trust_anchors_pem: str | None = None) -> dict:
    """The verification report (see the module docstring for what each verdict means).

    The manifest is read first; frames that cannot be decoded leave the watermark and the
    detector unchecked. Raises VideoIOError for a missing file or a folder, and when the media
    cannot be decoded and there is no readable manifest either (NoManifest or Unreadable);
    ProvenanceError for trust anchors that hold no PEM certificates.
    """
    from ..errors import VideoIOError
    from ..safety.detector import load_default_detector
    from ..safety.provenance import read_provenance
    from ..safety.watermark import detect_watermark
    from ..video_io import read_video

    p = _check_file(path)
    provenance = read_provenance(p, trust_anchors_pem)
    try:
        frames, fps = read_video(path)
        media_error = None
    except VideoIOError as error:
        if provenance.state == "Unreadable":  # neither the media nor the manifest: exit 2
            reason = "; ".join(provenance.errors) or "no reason given"
            raise VideoIOError(f"{error}; its C2PA manifest cannot be read either ({reason})") from error
        if provenance.state == "NoManifest":
            raise
        frames, fps, media_error = None, None, str(error)

    detector = load_default_detector()
    watermark = detect_watermark(frames) if frames is not None else None
    score = detector.score(frames) if frames is not None and min(frames.shape[1:3]) >= 16 else None
    payload = watermark.payload.as_hex() if watermark and watermark.detected and watermark.payload else None
    p_value = float(watermark.p_value) if watermark else None

    hint = ""
    if score is not None and score >= detector.threshold:
        hint = f"; the detector finds it looks generated (score {score:.2f}) but that is no proof"
    verified, verdict = _verdict(provenance, payload, p_value, frames is not None, hint)
    if verified:
        verified_by = "manifest" if provenance.state == "Trusted" else "watermark"
    else:
        verified_by = None
    return {
        "file": str(path),
        "verified": verified,
        "verified_by": verified_by,
        "verdict": verdict,
        "c2pa": provenance.to_dict(),
        "watermark": {
            "checked": watermark is not None,
            "detected": bool(watermark and watermark.detected),
            "payload": payload,
            "p_value": p_value,
            "frames_used": int(watermark.frames_used) if watermark else 0,
        },
        "detector": {"score": score, "threshold": detector.threshold},
        "media": {
            "decoded": frames is not None,
            "error": media_error,
            "frames": int(frames.shape[0]) if frames is not None else None,
            "height": int(frames.shape[1]) if frames is not None else None,
            "width": int(frames.shape[2]) if frames is not None else None,
            "fps": float(fps) if fps is not None else None,
        },
    }


def cmd_verify(args: argparse.Namespace) -> int:
    from ..errors import VideoIOError

    # The trust anchors first: a bad --trust file is the problem, whatever FILE holds.
    trust = read_trust_file(args.trust) if args.trust is not None else None
    try:
        report = verify_file(args.file, trust)
    except VideoIOError as error:
        if args.json:
            print(json.dumps({"file": args.file, "verified": False, "error": str(error)}))
        else:
            print(f"error: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        c2pa, wm, det, media = report["c2pa"], report["watermark"], report["detector"], report["media"]
        print(report["verdict"])
        signer = ""
        if c2pa.get("signer"):
            signer = f" (signer {c2pa['signer']}{', not trusted here' if c2pa['state'] == 'Valid' else ''})"
        print(
            f"  C2PA:      {c2pa['state']}"
            + signer
            + (f"; errors: {', '.join(c2pa['errors'][:3])}" if c2pa.get("errors") else "")
        )
        if c2pa.get("claims") and c2pa["state"] in ("Trusted", "Valid"):
            claims = c2pa["claims"]
            print(
                f"  claims:    model {claims.get('model')}, checkpoint {str(claims.get('checkpoint_sha256'))[:16]}..., "
                f"seed {claims.get('seed')}, prompt sha256 {str(claims.get('prompt_sha256'))[:16]}..."
            )
        if not media["decoded"]:
            print(f"  media:     not decodable ({media['error']})")
        if not wm["checked"]:
            print("  watermark: not checked (frames not decodable)")
        elif wm["detected"]:
            print(f"  watermark: payload {wm['payload']}, p = {wm['p_value']:.1e}")
        else:
            print(f"  watermark: not found (p = {wm['p_value']:.2f})")
        if det["score"] is not None:
            print(f"  detector:  score {det['score']:.2f} (threshold {det['threshold']:.2f})")
        else:
            print(f"  detector:  n/a ({'frames too small' if media['decoded'] else 'frames not decodable'})")
    return 0 if report["verified"] else 1
