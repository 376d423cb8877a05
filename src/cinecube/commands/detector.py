"""`cinecube detector train`: fit the generated-vs-real detector and measure it on held-out data."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import arguments as arg


def register(commands: argparse._SubParsersAction, eval_commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("detector", help="the detector that tells cinecube videos from real footage")
    sub = p.add_subparsers(dest="detector_command", required=True)
    t = sub.add_parser("train", help="fit the detector and report ROC AUC on held-out clips")
    t.add_argument(
        "--generated", required=True, help="folder of generated videos (gen_*.npz from scripts/detector_positives.py)"
    )
    arg.add_output(
        t, "--out", kind="file", default=None, help="detector weights to write (default: the bundled detector)"
    )
    arg.add_output(t, "--report", kind="file", default="detector.json", help="JSON report with the measured ROC AUC")
    arg.add_force(t, "the weights and report (the bundled detector is replaced only with --force)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--real-per-clip", type=int, default=12, help="windows taken from each real clip")
    t.set_defaults(func=cmd_detector_train)


def cmd_detector_train(args: argparse.Namespace) -> int:
    from ..errors import CinecubeError
    from ..outputs import check_output_file, staged_file
    from ..safety.detector import DEFAULT_DETECTOR_PATH
    from ..safety.detector_training import train_and_measure

    generated = Path(args.generated)
    if not generated.is_dir():
        raise CinecubeError(f"--generated {generated} is not a folder")
    out = check_output_file(args.out or DEFAULT_DETECTOR_PATH, "--out", suffixes=(".json",), force=args.force)
    report_path = check_output_file(args.report, "--report", suffixes=(".json",), force=args.force)
    if out.resolve() == report_path.resolve():
        raise CinecubeError("--out and --report name the same file; give two")
    detector, report = train_and_measure(
        generated, seed=args.seed, real_per_clip=args.real_per_clip, progress=lambda m: print(m, file=sys.stderr)
    )
    # Both staged, then published one right after the other: a failure leaves neither.
    with staged_file(out) as staged_weights, staged_file(report_path) as staged_report:
        detector.save(staged_weights)
        staged_report.write_text(json.dumps(report, indent=2) + "\n")
    test = report["test"]
    print(
        f"held-out ROC AUC {test['roc_auc']:.3f} on {test['n']} clips ({test['positives']} generated); "
        f"at threshold {report['threshold']:.2f}: TPR {test['true_positive_rate']:.1%}, "
        f"FPR {test['false_positive_rate']:.1%}"
    )
    print(f"wrote {out} and {report_path}")
    return 0
