"""Nothing is lost: the guarantees of cinecube/outputs.py, checked for every command that writes.

For each writing command (found from the parser: every argument added with
`commands.arguments.add_output`):
  (a) what is already at an output, and was not made by the command, survives: the command
      refuses it, and with --force a failure still leaves it as it was;
  (b) a failure injected late in the work leaves no output and no temporary behind;
  (c) bad arguments fail in one line before any output folder is created.
Then the defects these rules came from, one test each, and a checkpoint-corruption sweep.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cinecube.cli import build_parser, main
from cinecube.video_io import write_video

OUTPUT_DESTS = {"out", "output", "samples", "images", "report"}


def cli(args, capsys):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code, err, *needles):
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err


def tree(folder: Path) -> dict[str, str]:
    """Every entry below `folder` with a hash of its bytes (folders as 'dir')."""
    return {
        str(p.relative_to(folder)): "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(Path(folder).rglob("*"))
    }


def no_temporaries(folder: Path) -> bool:
    return not [p for p in Path(folder).rglob(".*") if "cinecube-" in p.name or ".tmp" in p.name]


def leaf_commands(parser: argparse.ArgumentParser, prefix=()):
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield prefix, parser
        return
    for name, sub in subs[0].choices.items():
        yield from leaf_commands(sub, (*prefix, name))


# ---------------------------------------------------------------------------------------------
# The commands that write, with what each needs. argv(ctx, out) writes to `out`; `bad` are
# arguments that must be refused; `fail` is (module, attribute) patched to raise late in the work.
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ctx(tmp_path_factory, tiny_run):
    import torch

    from cinecube.autoencoder import CausalVideoAutoencoder, save_autoencoder
    from cinecube.config import AUTOENCODER_PRESETS
    from cinecube.data.shapes import ShapesWorld

    root = tmp_path_factory.mktemp("reliability")
    torch.manual_seed(0)
    autoencoder = save_autoencoder(root / "ae", CausalVideoAutoencoder(AUTOENCODER_PRESETS["tiny"]))
    video = root / "clip.mp4"
    write_video(video, ShapesWorld(seed=0).sample_at(0, 32, 32, 5).video, fps=8)
    generated = root / "generated"
    generated.mkdir()
    report = root / "adherence.json"  # a report of two cases, to compare with itself
    report.write_text(
        json.dumps(
            {"records": [{"prompt": "a", "seed": i, "canvas": [], "results": {"color": True}} for i in range(2)]}
        )
    )
    return {
        "run": tiny_run,
        "autoencoder": autoencoder,
        "video": video,
        "generated": generated,
        "root": root,
        "report": report,
    }


def _fake_detector(*args, **kwargs):
    from cinecube.safety.detector import load_default_detector

    return load_default_detector(), {"test": {}, "threshold": 0.5}


TINY_GENERATE = ["--frames", "4", "--height", "32", "--width", "32", "--steps", "2"]

CASES = {
    ("generate",): dict(
        kind="file",
        name="v.mp4",
        argv=lambda c, out: ["generate", "a red circle", "--model", c["run"], *TINY_GENERATE, "-o", out],
        bad=[["--fps", "0"], ["--seed", str(2**70)], ["--height", "30"]],
        fail=("cinecube.safety.provenance", "sign_media"),
    ),
    ("extend",): dict(
        kind="file",
        name="longer.mp4",
        argv=lambda c, out: (
            ["extend", c["video"], "a red circle", "--model", c["run"], "--frames", "2"] + ["--steps", "2", "-o", out]
        ),
        bad=[["--direction", "sideways"], ["--frames", "0"]],
        fail=("cinecube.safety.provenance", "sign_media"),
    ),
    ("connect",): dict(
        kind="file",
        name="joined.mp4",
        argv=lambda c, out: (
            ["connect", c["video"], c["video"], "a red circle", "--model", c["run"], "--frames", "2"]
            + ["--steps", "2", "-o", out]
        ),
        bad=[["--frames", "-3"]],
        fail=("cinecube.safety.provenance", "sign_media"),
    ),
    ("edit",): dict(
        kind="file",
        name="edited.mp4",
        argv=lambda c, out: ["edit", c["video"], "a blue circle", "--model", c["run"], "--steps", "2", "-o", out],
        bad=[["--strength", "1.5"], ["--strength", "nan"]],
        fail=("cinecube.safety.provenance", "sign_media"),
    ),
    ("export",): dict(
        kind="folder",
        name="export",
        argv=lambda c, out: ["export", c["run"], "--out", out],
        bad=[["--dtype", "int8"]],
        fail=("cinecube.model_folder", "save_file"),
    ),
    ("export-autoencoder",): dict(
        kind="folder",
        name="ae-export",
        argv=lambda c, out: ["export-autoencoder", c["autoencoder"], "--out", out],
        bad=[["--dtype", "int8"]],
        fail=("cinecube.model_folder", "save_file"),
    ),
    ("reconstruct",): dict(
        kind="file",
        name="r.mp4",
        argv=lambda c, out: ["reconstruct", c["video"], "-o", out, "--model", c["run"]],
        bad=[["--max-frames", "0"]],
        fail=("cinecube.safety.provenance", "sign_media"),
    ),
    ("data", "build"): dict(
        kind="folder",
        name="corpus",
        argv=lambda c, out: (
            ["data", "build", "--world", "shapes", "--n", "2", "--frames", "3"]
            + ["--min-size", "32", "--max-size", "32", "--out", out]
        ),
        bad=[["--n", "0"], ["--min-size", "8"]],
        fail=("cinecube.video_io", "write_video", 1),  # the second clip
    ),
    ("data", "cache-latents"): dict(
        kind="folder",
        name="latents",
        argv=lambda c, out: (
            ["data", "cache-latents", "--autoencoder", c["autoencoder"], "--world", "shapes"]
            + ["--n", "2", "--canvases", "32x32", "--max-frames", "5", "--text-max-tokens", "0", "--out", out]
        ),
        bad=[["--shard-size", "0"], ["--canvases", "0x32"]],
        fail=("safetensors.torch", "save_file"),  # a shard
        resumable=True,  # a rerun continues it: finished shards stay, temporaries never do
    ),
    ("train",): dict(
        kind="folder",
        name="run",
        argv=lambda c, out: ["train", "--preset", "tiny", "--steps", "2", "--sample-every", "100", "--out", out],
        bad=[["--lr", "nan"], ["--tokens-per-step", "1"], ["--device", "quantum"], ["--resume"]],
        fail=("cinecube.model_folder", "save_file"),
        resumable=True,
    ),
    ("train-autoencoder",): dict(
        kind="folder",
        name="ae-run",
        argv=lambda c, out: (
            ["train-autoencoder", "--preset", "tiny", "--steps", "2", "--worlds", "shapes"] + ["--out", out]
        ),
        bad=[["--lr", "nan"], ["--device", "quantum"], ["--worlds", "moon"], ["--resume"]],
        fail=("cinecube.model_folder", "save_file"),
        resumable=True,
    ),
    ("eval", "adherence"): dict(
        kind="file",
        name="adherence.json",
        argv=lambda c, out: ["eval", "adherence", "--model", c["run"], "--n", "1", "--steps", "1", "--out", out],
        bad=[["--n", "0"], ["--grid", "5"]],
        fail=("cinecube.evaluate.adherence", "AdherenceReport.to_json"),
    ),
    ("eval", "fvd"): dict(
        kind="file",
        name="fvd.json",
        argv=lambda c, out: ["eval", "fvd", c["video"], c["video"], "--out", out],
        bad=[["--frames", "-1"]],
        fail=("cinecube.evaluate.fvd", "fvd"),
    ),
    ("eval", "fid"): dict(
        kind="file",
        name="fid.json",
        argv=lambda c, out: ["eval", "fid", c["video"], c["video"], "--out", out],
        bad=[["--frames-per-video", "0"]],
        fail=("cinecube.evaluate.fid", "fid"),
    ),
    ("eval", "autoencoder"): dict(
        kind="file",
        name="ae.json",
        argv=lambda c, out: (
            ["eval", "autoencoder", "--model", c["run"], "--clips", "carphone"] + ["--max-frames", "1", "--out", out]
        ),
        bad=[["--clips", "no-such-clip"]],
        fail=("cinecube.evaluate.autoencoder", "evaluate_autoencoder"),
    ),
    ("eval", "all"): dict(
        kind="folder",
        name="report",
        argv=lambda c, out: (
            ["eval", "all", "--model", c["run"], "--quick", "--n-prompts", "1", "--steps", "1"]
            + ["--no-i3d-check", "--out", out]
        ),
        bad=[["--n-prompts", "0"], ["--videos-per-prompt", "0"]],
        fail=("cinecube.data.shapes", "render"),  # the truth, after the first video is published
    ),
    ("eval", "compare"): dict(
        kind="file",
        name="compare.json",
        argv=lambda c, out: ["eval", "compare", c["report"], c["report"], "--out", out],
        bad=[["--bogus"]],
        fail=("cinecube.evaluate.compare", "compare_reports"),
    ),
    ("eval", "conditioning"): dict(
        kind="folder",
        name="conditioning",
        argv=lambda c, out: ["eval", "conditioning", "--model", c["run"], "--n", "1", "--steps", "1", "--out", out],
        bad=[["--n", "0"], ["--modes", "animate,fly"], ["--guidance", "-1"]],
        fail=("cinecube.evaluate.conditioning", "write_report"),
    ),
    ("detector", "train"): dict(
        kind="file",
        name="detector.json",
        argv=lambda c, out: (
            ["detector", "train", "--generated", c["generated"], "--report", out.with_name("r.json")] + ["--out", out]
        ),
        bad=[["--generated", "/no/such/folder"]],
        fail=("cinecube.safety.detector_training", "train_and_measure"),
    ),
}


def test_every_output_argument_is_declared_and_every_writing_command_is_checked():
    writing = set()
    for path, parser in leaf_commands(build_parser()):
        for action in parser._actions:
            if action.dest in OUTPUT_DESTS or hasattr(action, "output_kind"):
                where = f"cinecube {' '.join(path)} {action.option_strings[0]}"
                assert hasattr(action, "output_kind"), f"`{where}` names an output: add it with add_output"
                writing.add(path)
    assert writing == set(CASES), "a command that writes needs its cases in CASES (and the rules of outputs.py)"


def _existing(kind: str, where: Path) -> Path:
    """Something the user made at the output: a file, or a folder with a file in it."""
    if kind == "file":
        where.write_bytes(b"the user's own bytes")
    else:
        where.mkdir()
        (where / "notes.txt").write_text("the user's own notes")
    return where


@pytest.mark.parametrize("command", sorted(CASES), ids=" ".join)
def test_a_what_the_user_made_survives(command, ctx, tmp_path, capsys, monkeypatch):
    case = CASES[command]
    out = _existing(case["kind"], tmp_path / case["name"])
    before = tree(tmp_path)
    code, _, err = cli(case["argv"](ctx, out), capsys)
    assert code == 2 and err.startswith("error: ") and "Traceback" not in err, err
    assert tree(tmp_path) == before
    # --force replaces only what cinecube wrote: a folder of the user's is still refused, and a
    # file the user asked to replace survives a failure.
    if "--force" in _flags(command):
        _fail(monkeypatch, case)
        try:
            code = main([str(a) for a in [*case["argv"](ctx, out), "--force"]])
        except RuntimeError as error:
            assert "injected" in str(error)
        else:
            assert code != 0
        capsys.readouterr()
        assert tree(tmp_path) == before


def _flags(command) -> set[str]:
    for path, parser in leaf_commands(build_parser()):
        if path == command:
            return {s for a in parser._actions for s in a.option_strings}
    raise AssertionError(command)


def _fail(monkeypatch, case):
    """Make (module, attribute[, calls that pass first]) raise."""
    module, attribute, *passing = case["fail"]
    target = __import__(module, fromlist=["_"])
    owner, _, name = attribute.rpartition(".")
    if owner:
        target = getattr(target, owner)
    real, calls = getattr(target, name), []

    def injected(*args, **kwargs):
        calls.append(1)
        if len(calls) > (passing[0] if passing else 0):
            raise RuntimeError("injected failure")
        return real(*args, **kwargs)

    monkeypatch.setattr(target, name, injected)


@pytest.mark.parametrize("command", sorted(CASES), ids=" ".join)
def test_b_a_failure_late_in_the_work_leaves_nothing(command, ctx, tmp_path, capsys, monkeypatch):
    case = CASES[command]
    _fail(monkeypatch, case)
    out = tmp_path / case["name"]
    try:
        code = main([str(a) for a in case["argv"](ctx, out)])
    except RuntimeError as error:
        assert "injected" in str(error)
    else:
        assert code != 0
    capsys.readouterr()
    assert no_temporaries(tmp_path), tree(tmp_path)
    if case.get("resumable"):
        # What a resumable job finished before the failure stays, whole, for the rerun.
        assert not out.exists() or all(p.stat().st_size > 0 for p in out.rglob("*") if p.is_file())
    else:
        assert not out.exists() and [p.name for p in tmp_path.iterdir()] == [], tree(tmp_path)


@pytest.mark.parametrize(
    "command,bad", [(c, b) for c in sorted(CASES) for b in CASES[c]["bad"]], ids=lambda x: " ".join(x)
)
def test_c_bad_arguments_fail_in_one_line_before_anything_is_created(command, bad, ctx, tmp_path, capsys):
    case = CASES[command]
    out = tmp_path / "new" / case["name"]
    code, _, err = cli([*case["argv"](ctx, out), *bad], capsys)
    assert_one_line_error(code, err)
    assert not (tmp_path / "new").exists()


# ---------------------------------------------------------------------------------------------
# The defects, one by one
# ---------------------------------------------------------------------------------------------


def test_export_refuses_folders_it_did_not_write_and_replaces_its_own_with_force(tiny_run, tmp_path, capsys):
    from cinecube.model_folder import load_model_folder

    cwd_like = tmp_path / "work"
    (cwd_like / "runs").mkdir(parents=True)
    run = cwd_like / "runs" / "tiny"
    import shutil

    shutil.copytree(tiny_run, run)
    before = tree(cwd_like)
    for out in (run, cwd_like, cwd_like / "runs"):  # the source itself, or a folder holding it
        code, _, err = cli(["export", run, "--out", out, "--force"], capsys)
        assert_one_line_error(code, err, "is, or contains, the input")
    regular = cwd_like / "file.txt"
    regular.write_text("mine")
    code, _, err = cli(["export", run, "--out", regular], capsys)
    assert_one_line_error(code, err, "is not a folder")
    assert regular.read_text() == "mine" and not [p for p in cwd_like.iterdir() if p.name.startswith(".")]
    regular.unlink()
    assert tree(cwd_like) == before
    out = tmp_path / "export"
    assert cli(["export", run, "--out", out], capsys)[0] == 0
    code, _, err = cli(["export", run, "--out", out, "--dtype", "float32"], capsys)
    assert_one_line_error(code, err, "--force")
    assert cli(["export", run, "--out", out, "--dtype", "float32", "--force"], capsys)[0] == 0
    assert load_model_folder(out).weights["final.linear.weight"].dtype.is_floating_point
    (out / "mine.txt").write_text("added by the user")
    code, _, err = cli(["export", run, "--out", out, "--force"], capsys)
    assert_one_line_error(code, err, "does not hold a model folder cinecube wrote")


def test_generate_checks_the_audit_log_before_it_touches_the_output(tiny_run, tmp_path, capsys, monkeypatch):
    import cinecube.pipeline

    out = tmp_path / "v.mp4"
    out.write_bytes(b"an earlier video")

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the request was checked")

    monkeypatch.setattr(cinecube.pipeline.Pipeline, "from_pretrained", no_model)
    for audit in (tmp_path / "missing" / "audit.jsonl", tmp_path):
        code, _, err = cli(
            ["generate", "a red circle", *TINY_GENERATE, "-o", out, "--force", "--audit-log", audit], capsys
        )
        assert_one_line_error(code, err, "audit log")
    assert out.read_bytes() == b"an earlier video"


def test_generate_publishes_the_audit_record_before_the_output(tiny_run, tmp_path, capsys, monkeypatch):
    from cinecube.safety.audit import AuditLog

    out, audit = tmp_path / "v.mp4", tmp_path / "audit.jsonl"
    out.write_bytes(b"an earlier video")

    def refused(self, record):
        raise __import__("cinecube.safety.audit", fromlist=["_"]).AuditLogError("disk full")

    monkeypatch.setattr(AuditLog, "append", refused)
    code, _, err = cli(["generate", "a red circle", "--model", tiny_run, *TINY_GENERATE, "-o", out, "--force",
                        "--audit-log", audit], capsys)  # fmt: skip
    assert_one_line_error(code, err, "disk full")
    assert out.read_bytes() == b"an earlier video" and no_temporaries(tmp_path)


def test_requests_are_checked_before_the_model_loads(tmp_path, capsys, monkeypatch):
    import cinecube.pipeline

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the request was checked")

    monkeypatch.setattr(cinecube.pipeline.Pipeline, "from_pretrained", no_model)
    cases = [
        (["generate", "   "], "prompt is empty"),
        (["generate", "a red circle", "--fps", "0"], "--fps"),
        (["generate", "a red circle", "--seed", str(2**64)], "seed"),
        (["generate", "a red circle", "--steps", "0"], "steps"),
        (["generate", "a red circle", "-o", tmp_path], "is a folder"),
        (["generate", "a red circle", "-o", tmp_path / "x.avi"], "suffix"),
        (["eval", "adherence", "--out", tmp_path / "no" / "a.json"], "does not exist"),
    ]
    for args, needle in cases:
        code, _, err = cli(args, capsys)
        assert_one_line_error(code, err, needle)
    assert list(tmp_path.iterdir()) == []


def test_a_prompt_that_is_not_utf8_is_one_line(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "cinecube.cli", "generate", b"a red \xff circle", "-o", str(tmp_path / "v.mp4")],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2 and out.stderr.strip() == "error: prompt is not valid UTF-8 text", out.stderr
    assert list(tmp_path.iterdir()) == []


def test_the_python_api_takes_numpy_integers_and_refuses_bad_types_in_one_line(tiny_run):
    from cinecube.errors import InvalidRequestError
    from cinecube.pipeline import Pipeline

    pipe = Pipeline.from_pretrained(tiny_run)
    video = pipe("a red circle", frames=np.int64(4), height=np.int32(32), width=32, steps=np.int64(2), progress=False)
    assert video.frames.shape == (4, 32, 32, 3)
    for kwargs, needle in [
        ({"guidance": None}, "guidance None"),
        ({"height": 32.0}, "height 32.0 is not an integer"),
        ({"seed": -1}, "seed -1"),
        ({"height": 16, "width": 16}, "multiples of 4 from 32"),  # the watermark's minimum, said once
    ]:
        with pytest.raises(InvalidRequestError, match=needle):
            pipe("a red circle", **{"frames": 4, "height": 32, "width": 32, "steps": 1, **kwargs})


def test_resume_needs_a_run_and_train_checks_everything_before_creating_the_folder(tmp_path, capsys):
    typo = tmp_path / "typo"
    code, _, err = cli(["train", "--resume", "--out", typo], capsys)
    assert_one_line_error(code, err, "holds no run to continue")
    afile = tmp_path / "afile"
    afile.write_text("mine")
    code, _, err = cli(["train", "--steps", "1", "--out", afile], capsys)
    assert_one_line_error(code, err, "is a file")
    assert afile.read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_stale_temporaries_of_dead_processes_are_cleaned_and_live_ones_kept(tiny_run, tmp_path, capsys):
    dead = _dead_pid()
    stale_file = tmp_path / f".v.mp4.cinecube-tmp-{dead}-0123abcd.mp4"
    stale_file.write_bytes(b"")
    legacy = tmp_path / "run" / "checkpoints" / f".step_0000002.tmp-{dead}"
    live = tmp_path / "run" / "checkpoints" / f".step_0000004.cinecube-tmp-{os.getpid()}-0123abcd"
    for folder in (legacy, live):
        folder.mkdir(parents=True)
        (folder / "model.safetensors").write_bytes(b"half")
    # A folder moved aside for a replacement that never came is put back.
    aside = tmp_path / f".export.cinecube-old-{dead}-0123abcd"
    aside.mkdir()
    (aside / "config.json").write_text("{}")

    assert (
        cli(["generate", "a red circle", "--model", tiny_run, *TINY_GENERATE, "-o", tmp_path / "v.mp4"], capsys)[0] == 0
    )
    assert not stale_file.exists() and not aside.exists() and (tmp_path / "export" / "config.json").exists()
    assert cli(["train", "--steps", "2", "--checkpoint-every", "2", "--sample-every", "100",
                "--out", tmp_path / "run"], capsys)[0] == 0  # fmt: skip
    assert not legacy.exists() and live.exists()


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_ctrl_c_during_training_saves_a_checkpoint_once_and_says_so(tmp_path):
    from cinecube.model_folder import checkpoint_dirs

    run = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-m", "cinecube.cli", "train", "--preset", "tiny", "--steps", "100000"]
        + ["--checkpoint-every", "100000", "--sample-every", "100000", "--out", str(run)],
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while not ((run / "metrics.jsonl").exists() and (run / "metrics.jsonl").stat().st_size) and time.time() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "saved a checkpoint at step" in err and "--resume" in err and "Traceback" not in err
    saved = checkpoint_dirs(run)
    assert len(saved) == 1 and f"step {int(saved[0].name[5:])} " in err
    assert no_temporaries(run)


def test_verify_into_a_closed_pipe_is_quiet(tiny_run, tmp_path, capsys):
    video = tmp_path / "v.mp4"
    assert cli(["generate", "a red circle", "--model", tiny_run, *TINY_GENERATE, "-o", video], capsys)[0] == 0
    # `true` exits at once, so verify's report meets a closed pipe (as `| head` does on a long one).
    out = subprocess.run(
        f"{sys.executable} -m cinecube.cli verify {video} --json | true", shell=True, capture_output=True, text=True
    )
    assert "Traceback" not in out.stderr and "BrokenPipe" not in out.stderr, out.stderr


def test_a_reconstruction_carries_the_provenance_of_a_cinecube_output(ctx, tmp_path, capsys):
    out = tmp_path / "r.mp4"
    assert cli(["reconstruct", ctx["video"], "-o", out, "--model", ctx["run"]], capsys)[0] == 0
    code, printed, _ = cli(["verify", out], capsys)
    assert code == 0 and printed.startswith("VERIFIED")


# ---------------------------------------------------------------------------------------------
# Checkpoint corruption: every file of a checkpoint, truncated, zeroed or replaced by garbage
# ---------------------------------------------------------------------------------------------


def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif how == "zero":
        path.write_bytes(bytes(len(data)))
    else:
        path.write_bytes(b"garbage " * 16)


CHECKPOINT_FILES = ["config.json", "model.safetensors", "training/raw.safetensors", "training/optimizer.pt",
                    "training/state.json"]  # fmt: skip


@pytest.fixture(scope="module")
def two_checkpoint_run(tmp_path_factory):
    import dataclasses

    from cinecube.config import PRESETS, TRAIN_PRESETS
    from cinecube.train.loop import train

    run = tmp_path_factory.mktemp("two_checkpoints") / "run"
    config = dataclasses.replace(TRAIN_PRESETS["tiny"], steps=4, checkpoint_every=2, sample_every=100, log_every=1)
    train(PRESETS["tiny"], config, run, progress=False)
    return run


@pytest.mark.parametrize("how", ["truncate", "zero", "garbage"])
@pytest.mark.parametrize("name", CHECKPOINT_FILES)
def test_a_damaged_newest_checkpoint_falls_back_with_a_warning(two_checkpoint_run, tmp_path, capsys, name, how):
    import shutil

    from cinecube.model_folder import checkpoint_dirs

    run = tmp_path / "run"
    shutil.copytree(two_checkpoint_run, run)
    _damage(run / "checkpoints" / "step_0000004" / name, how)
    code, _, err = cli(["train", "--resume", "--steps", "6", "--out", run], capsys)
    assert code == 0 and "Traceback" not in err, err
    assert "skipped step_0000004" in err and "resuming from step_0000002" in err
    assert (run / "checkpoints" / "damaged-step_0000004").is_dir()  # kept for inspection
    assert [d.name for d in checkpoint_dirs(run)][-1] == "step_0000006"


@pytest.mark.parametrize("damage", ["empty step folder", "state without stream", "broken run.json", "all damaged"])
def test_other_damage_falls_back_or_says_clearly_that_nothing_can_be_resumed(
    two_checkpoint_run, tmp_path, capsys, damage
):
    import json
    import shutil

    run = tmp_path / "run"
    shutil.copytree(two_checkpoint_run, run)
    newest = run / "checkpoints" / "step_0000004"
    if damage == "empty step folder":
        shutil.rmtree(newest)
        newest.mkdir()
    elif damage == "state without stream":
        state = json.loads((newest / "training" / "state.json").read_text())
        (newest / "training" / "state.json").write_text(json.dumps({"step": state["step"]}))
    elif damage == "broken run.json":
        (run / "run.json").write_text("{not json")
    else:
        for folder in (run / "checkpoints").iterdir():
            (folder / "model.safetensors").write_bytes(b"")
    code, _, err = cli(["train", "--resume", "--steps", "6", "--out", run], capsys)
    assert "Traceback" not in err
    if damage == "all damaged":
        assert_one_line_error(code, err, "no checkpoint of", "can be resumed from")
    elif damage == "broken run.json":
        assert code == 0 and "run.json is unreadable" in err
    else:
        assert code == 0 and "resuming from step_0000002" in err, err
