"""The user-facing commands: generation from Python and the CLI, and their refusals."""

import subprocess
import sys

import numpy as np
import pytest

from cinecube.cli import main
from cinecube.errors import InvalidRequestError
from cinecube.pipeline import Pipeline


@pytest.fixture(scope="module")
def pipe(tiny_run):
    return Pipeline.from_pretrained(tiny_run)


def test_python_api_generates_frames_of_the_requested_size(pipe, tmp_path):
    video = pipe("a red circle moving right", frames=5, height=32, width=48, steps=3, seed=0, progress=False)
    assert video.frames.shape == (5, 32, 48, 3) and video.frames.dtype == np.uint8
    again = pipe("a red circle moving right", frames=5, height=32, width=48, steps=3, seed=0, progress=False)
    assert np.array_equal(video.frames, again.frames)  # seeded and deterministic
    other = pipe("a red circle moving right", frames=5, height=32, width=48, steps=3, seed=1, progress=False)
    assert not np.array_equal(video.frames, other.frames)
    path = video.save(tmp_path / "clip.mp4")
    assert path.stat().st_size > 0
    image = pipe("a blue square", frames=1, height=32, width=32, steps=2, progress=False)
    assert image.save(tmp_path / "frame.png").exists()


def test_heun_and_no_guidance_paths_work(pipe):
    a = pipe("a green triangle", frames=2, height=32, width=32, steps=2, guidance=1.0, sampler="heun", progress=False)
    assert a.frames.shape == (2, 32, 32, 3)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"prompt": "   "}, "prompt is empty"),
        ({"prompt": "red " * 200}, "maximum is 32"),
        ({"height": 30}, "height 30 is not allowed; height and width: multiples of 4"),
        ({"width": 2}, "width 2"),
        ({"width": 1024}, "width 1024"),
        ({"frames": 0}, "frames 0 is not allowed"),
        ({"frames": 33}, "frames 33"),
        ({"steps": 0}, "steps 0"),
        ({"guidance": -1.0}, "guidance"),
    ],
)
def test_bad_requests_are_refused_with_the_allowed_range(pipe, kwargs, match):
    request = {"prompt": "a red circle", "frames": 4, "height": 32, "width": 32, "steps": 2, **kwargs}
    prompt = request.pop("prompt")
    with pytest.raises(InvalidRequestError, match=match):
        pipe(prompt, progress=False, **request)


def test_over_long_request_is_refused(pipe):
    with pytest.raises(InvalidRequestError, match="tokens"):
        pipe("a red circle", frames=32, height=512, width=512, steps=2, progress=False)


def run_cli(args, capsys):
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_generate_writes_a_video(tiny_run, tmp_path, capsys):
    out = tmp_path / "out.gif"
    code, stdout, _ = run_cli(
        [
            "generate",
            "a yellow circle moving up",
            "--frames",
            "4",
            "--height",
            "32",
            "--width",
            "32",
            "--steps",
            "2",
            "--model",
            str(tiny_run),
            "-o",
            str(out),
        ],
        capsys,
    )
    assert code == 0 and out.exists() and "wrote" in stdout
    from cinecube.video_io import read_video

    frames, _ = read_video(out)
    assert frames.shape == (4, 32, 32, 3)


@pytest.mark.parametrize(
    "extra,match",
    [
        (["--height", "18"], "height 18"),
        (["--height", "16", "--width", "24"], "the invisible watermark needs"),
        (["--frames", "0"], "frames 0"),
        (["-o", "{tmp}/missing/out.mp4"], "does not exist"),
        (["-o", "{tmp}/out.avi"], "allowed: .mp4, .gif, .png"),
        (["-o", "{tmp}/out.png"], "one frame"),
        (["--model", "{tmp}/no-such-model"], "does not exist"),
    ],
)
def test_cli_errors_are_one_line_and_leave_no_file(tiny_run, tmp_path, capsys, extra, match):
    extra = [x.replace("{tmp}", str(tmp_path)) for x in extra]
    args = [
        "generate",
        "a red circle",
        "--frames",
        "4",
        "--height",
        "32",
        "--width",
        "32",
        "--steps",
        "2",
        "--model",
        str(tiny_run),
        "-o",
        str(tmp_path / "out.mp4"),
    ]
    # later options win in argparse
    code, _, err = run_cli(args + extra, capsys)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: ") and match in err
    assert not list(tmp_path.rglob("out.*"))


def test_sizes_below_the_watermark_tile_need_the_watermark_skipped(tiny_run, tmp_path, capsys):
    out = tmp_path / "small.gif"
    code, stdout, err = run_cli(
        [
            "generate",
            "a red circle",
            "--frames",
            "4",
            "--height",
            "16",
            "--width",
            "24",
            "--steps",
            "2",
            "--model",
            str(tiny_run),
            "--unsafe-skip-watermark",
            "-o",
            str(out),
        ],
        capsys,
    )
    assert code == 0, err
    from cinecube.video_io import read_video

    assert read_video(out)[0].shape == (4, 16, 24, 3)


def test_cli_corrupt_checkpoint_is_refused(tiny_run, tmp_path, capsys):
    import shutil

    from cinecube.model_folder import checkpoint_dirs

    broken = tmp_path / "broken"
    shutil.copytree(checkpoint_dirs(tiny_run)[-1], broken)
    (broken / "model.safetensors").write_bytes(b"\x00" * 100)
    code, _, err = run_cli(
        [
            "generate",
            "a red circle",
            "--frames",
            "2",
            "--height",
            "32",
            "--width",
            "32",
            "--model",
            str(broken),
            "-o",
            str(tmp_path / "x.mp4"),
        ],
        capsys,
    )
    assert code == 2 and "corrupt" in err and not (tmp_path / "x.mp4").exists()


def test_console_script_is_installed():
    result = subprocess.run([sys.executable, "-m", "cinecube.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "generate" in result.stdout and "train" in result.stdout


def test_export_writes_a_smaller_model_that_generates_the_same_way(tiny_run, tmp_path, capsys):
    out = tmp_path / "exported"
    code, stdout, _ = run_cli(["export", str(tiny_run), "--out", str(out)], capsys)
    assert code == 0 and "bfloat16" in stdout
    from cinecube.model_folder import checkpoint_dirs

    original = checkpoint_dirs(tiny_run)[-1] / "model.safetensors"
    assert (out / "model.safetensors").stat().st_size < 0.6 * original.stat().st_size
    assert not (out / "training").exists()
    a = Pipeline.from_pretrained(tiny_run)("a red circle", frames=2, height=32, width=32, steps=2, progress=False)
    b = Pipeline.from_pretrained(out)("a red circle", frames=2, height=32, width=32, steps=2, progress=False)
    assert np.abs(a.frames.astype(int) - b.frames.astype(int)).mean() < 3  # bf16 rounding only
