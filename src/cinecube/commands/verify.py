"""`cinecube verify FILE [--json]`: is this video one cinecube made?

Three independent pieces of evidence, strongest first:
  * the C2PA manifest: only `Trusted` (intact, signed under this installation's root or a
    trust anchor given with --trust) counts as signed by us; `Invalid` means the file was
    altered after signing;
  * the invisible watermark: survives re-encoding, resizing and remuxing that strip the
    manifest; reported with its payload and p-value;
  * the detector: a score from the pixels alone, a hint, never proof.
Exit status: 0 verified as ours (Trusted manifest, or our watermark when the manifest is
gone), 1 not verified (no evidence, or a manifest that fails validation), 2 unreadable input.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(commands: argparse._SubParsersAction, eval_commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("verify", help="tell whether a video or image was made by cinecube")
    p.add_argument("file")
    p.add_argument("--json", action="store_true", help="print the full report as JSON")
    p.add_argument(
        "--trust", default=None, help="PEM file of root certificates to trust (default: this installation's own)"
    )
    p.set_defaults(func=cmd_verify)


def verify_file(path: str | Path, trust_anchors_pem: str | None = None) -> dict:
    """The verification report; raises VideoIOError when the file cannot be read as media."""
    from ..safety.detector import load_default_detector
    from ..safety.provenance import read_provenance
    from ..safety.watermark import detect_watermark
    from ..video_io import read_video

    frames, fps = read_video(path)  # VideoIOError -> exit 2
    provenance = read_provenance(path, trust_anchors_pem)
    watermark = detect_watermark(frames)
    detector = load_default_detector()
    score = detector.score(frames) if min(frames.shape[1:3]) >= 16 else None

    payload = watermark.payload.as_hex() if watermark.detected and watermark.payload else None
    manifest_payload = provenance.soft_binding
    if provenance.state == "Invalid":
        verified = False
        verdict = "NOT VERIFIED: the C2PA manifest fails validation (the file was altered after signing)"
        if payload:
            verdict += f"; the cinecube watermark {payload} is present"
    elif provenance.state == "Trusted":
        verified = True
        verdict = "VERIFIED: signed by cinecube (C2PA Trusted)"
        if payload and manifest_payload and payload.replace("-", "") != manifest_payload:
            verified = False
            verdict = (
                f"NOT VERIFIED: the manifest is Trusted but binds watermark {manifest_payload} "
                f"while the frames carry {payload}"
            )
        elif payload:
            verdict += f" and the watermark matches ({payload})"
    elif payload:
        verified = True
        state = "no manifest" if provenance.state == "NoManifest" else f"manifest {provenance.state}"
        verdict = (
            f"VERIFIED by watermark: cinecube payload {payload}, p = {watermark.p_value:.1e} "
            f"({state}: the file was re-encoded or its metadata stripped)"
        )
    else:
        verified = False
        hint = ""
        if score is not None and score >= detector.threshold:
            hint = f"; the detector finds it looks generated (score {score:.2f}) but that is no proof"
        verdict = f"NOT VERIFIED: no trusted manifest and no cinecube watermark{hint}"
    return {
        "file": str(path),
        "verified": verified,
        "verdict": verdict,
        "c2pa": provenance.to_dict(),
        "watermark": {
            "detected": bool(watermark.detected),
            "payload": payload,
            "p_value": float(watermark.p_value),
            "frames_used": int(watermark.frames_used),
        },
        "detector": {"score": score, "threshold": detector.threshold},
        "media": {
            "frames": int(frames.shape[0]),
            "height": int(frames.shape[1]),
            "width": int(frames.shape[2]),
            "fps": float(fps),
        },
    }


def cmd_verify(args: argparse.Namespace) -> int:
    from ..errors import VideoIOError

    trust = Path(args.trust).read_text() if args.trust else None
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
        c2pa, wm, det = report["c2pa"], report["watermark"], report["detector"]
        print(report["verdict"])
        print(
            f"  C2PA:      {c2pa['state']}"
            + (f" (signer {c2pa['signer']})" if c2pa.get("signer") else "")
            + (f"; errors: {', '.join(c2pa['errors'][:3])}" if c2pa.get("errors") else "")
        )
        if c2pa.get("claims") and c2pa["state"] in ("Trusted", "Valid"):
            claims = c2pa["claims"]
            print(
                f"  claims:    model {claims.get('model')}, checkpoint {str(claims.get('checkpoint_sha256'))[:16]}..., "
                f"seed {claims.get('seed')}, prompt sha256 {str(claims.get('prompt_sha256'))[:16]}..."
            )
        print(
            "  watermark: "
            + (
                f"payload {wm['payload']}, p = {wm['p_value']:.1e}"
                if wm["detected"]
                else f"not found (p = {wm['p_value']:.2f})"
            )
        )
        print(
            "  detector:  "
            + (
                "n/a (frames too small)"
                if det["score"] is None
                else f"score {det['score']:.2f} (threshold {det['threshold']:.2f})"
            )
        )
    return 0 if report["verified"] else 1
