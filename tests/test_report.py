"""The evaluation report: report.json, index.html with videos, tables and plots, and its rendering
in a headless browser (skipped, with the reason, when no Chromium is installed)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from cinecube.errors import CinecubeError
from cinecube.evaluate.report import find_metrics_file, render_html, settings_for, write_report
from cinecube.video_io import write_video

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def _browser() -> str | None:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


needs_browser = pytest.mark.skipif(
    _browser() is None,
    reason="no Chromium binary on PATH (install with `apt-get install -y chromium`) to render the report",
)


def render_dom(html_file: Path, budget_ms: int = 10000) -> str:
    """The page's DOM after scripts ran, from headless Chromium."""
    cmd = [
        _browser(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--mute-audio",
        "--no-first-run",
        f"--user-data-dir={html_file.parent / '.chromium-profile'}",
        f"--virtual-time-budget={budget_ms}",
        "--dump-dom",
        html_file.resolve().as_uri(),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def _moving_square(frames: int, size: int, color: tuple[int, int, int]) -> np.ndarray:
    video = np.zeros((frames, size, size, 3), dtype=np.uint8)
    for t in range(frames):
        video[t, 8:20, 2 + t : 14 + t] = color
    return video


def _fake_results(out: Path) -> dict:
    """Results shaped like evaluate_all's, with real video files beside them."""
    (out / "videos").mkdir(parents=True)
    cases = []
    prompts = [
        "a red square moving right on a black background",
        "a <b>bold</b> & \"quoted\" prompt <script>document.title='hacked'</script>",
    ]
    for i, prompt in enumerate(prompts):
        write_video(out / "videos" / f"case_{i:03d}.mp4", _moving_square(10, 40, (220, 40, 40)), fps=8)
        write_video(out / "videos" / f"case_{i:03d}_truth.mp4", _moving_square(10, 40, (255, 0, 0)), fps=8)
        videos = [{"path": f"videos/case_{i:03d}.mp4", "seed": 7 + i, "seconds": 1.25}]
        if i == 0:  # a second seed of the first prompt (--videos-per-prompt 2)
            write_video(out / "videos" / "case_000_seed1.mp4", _moving_square(10, 40, (200, 60, 60)), fps=8)
            videos.append({"path": "videos/case_000_seed1.mp4", "seed": 8, "seconds": 1.3})
        cases.append(
            {
                "index": i,
                "prompt": prompt,
                "seed": 7 + i,
                "size": [10, 40, 40],
                "case_size": [10, 40, 40],
                "videos": videos,
                "truth": f"videos/case_{i:03d}_truth.mp4",
                "results": {"color": True, "shape": i == 0, "direction": None, "count": True},
            }
        )
    fvd = {
        "logits": {
            "value": 123.4,
            "n_a": 2,
            "n_b": 2,
            "dim": 400,
            "feature": "logits",
            "note": "rank <= 1",
            "floor": 99.0,
        },
        "pool": {"value": 5.6, "n_a": 2, "n_b": 2, "dim": 1024, "feature": "pool", "note": "rank <= 1"},
    }
    return {
        "model": {"name": "test-model", "path": "runs/x", "weights_sha256": "ab" * 32, "autoencoder": "causal3d"},
        "settings": settings_for(True),
        "adherence": {
            "accuracy": {"color": 1.0, "shape": 0.5, "direction": None, "count": 1.0},
            "passed": {"color": 2, "shape": 1, "direction": 0, "count": 2},
            "scored": {"color": 2, "shape": 2, "direction": 0, "count": 2},
            "interval_95": {"color": [0.342, 1.0], "shape": [0.12, 0.88], "direction": None, "count": [0.342, 1.0]},
            "targets": {"color": 0.9, "shape": 0.7, "direction": 0.8, "count": 0.8},
            "all_pass": 0.5,
            "n_cases": 2,
            "by_objects": {
                "1": {"cases": 1, "accuracy": {"color": 1.0, "shape": 1.0, "direction": None, "count": 1.0}},
                "2": {"cases": 1, "accuracy": {"color": 1.0, "shape": 0.0, "direction": None, "count": 1.0}},
            },
        },
        "fvd": fvd,
        "fid": {
            "value": 77.7,
            "n_a": 20,
            "n_b": 20,
            "dim": 2048,
            "feature": "inception-pool3",
            "note": "",
            "floor": 31.5,
            "frames_per_video": "all",
        },
        "autoencoder": {
            "status": "ok",
            "kind": "causal3d",
            "compression": "4x8x8",
            "mean_psnr": 28.5,
            "mean_ssim": 0.81,
            "clips": [{"name": "tree", "frames": 9, "height": 64, "width": 64, "psnr": 28.5, "ssim": 0.81}],
        },
        "timing": {
            "videos": 2,
            "steps": 4,
            "mean_seconds_per_video": 1.25,
            "median_seconds_per_video": 1.25,
            "max_seconds_per_video": 1.3,
            "frames_per_second": 8.0,
            "torch_threads": 2,
            "per_video": [
                {
                    "case": i,
                    "seed": 7 + i,
                    "seconds": 1.2 + 0.1 * i,
                    "frames": 10,
                    "height": 40,
                    "width": 40,
                    "tokens": 300,
                }
                for i in range(2)
            ],
        },
        "i3d_check": {
            "top5": {"cup": [["opening bottle", 0.5], ["using remote controller (not gaming)", 0.3]]},
            "summary": {
                "logits": {
                    "same_clip_halves_mean": 10.0,
                    "different_clips_mean": 900.0,
                    "same_max": 12.0,
                    "different_min": 400.0,
                }
            },
            "note": "few windows",
        },
        "cases": cases,
        "stage_seconds": {"total": 12.0},
    }


@pytest.fixture
def report_dir(tmp_path: Path) -> tuple[Path, dict]:
    out = tmp_path / "report"
    results = _fake_results(out)
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text(
        "".join(json.dumps({"step": s, "loss": 1.0 / s}) + "\n" for s in range(10, 310, 10)) + '{"step": 31'
    )  # cut short
    write_report(out, results, metrics_file=run / "metrics.jsonl")
    return out, results


def test_report_writes_json_html_and_plots(report_dir):
    out, results = report_dir
    for name in ("report.json", "index.html", "loss.png", "adherence.png", "timing.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 500, name
    saved = json.loads((out / "report.json").read_text())
    assert saved["plots"] == {"loss": "loss.png", "adherence": "adherence.png", "timing": "timing.png"}
    assert saved["fvd"]["logits"]["value"] == 123.4
    page = (out / "index.html").read_text()
    # Every generated video and every ground-truth render is a <video> with a file beside it.
    sources = re.findall(r'<video src="([^"]+)"', page)
    assert sources == [
        "videos/case_000.mp4",
        "videos/case_000_seed1.mp4",
        "videos/case_000_truth.mp4",
        "videos/case_001.mp4",
        "videos/case_001_truth.mp4",
    ]
    assert all((out / s).is_file() for s in sources)
    for text in (
        "Prompt adherence",
        "FVD (I3D 400-d logits)",
        "FID per frame",
        "Generation time",
        "Autoencoder reconstruction",
        "<th>floor</th>",
        "99.00",
        "31.50",
        "I3D check on real clips",
        "opening bottle",
        "below target",
        '<img src="loss.png"',
        "By objects asked for",
        "<th>95 % interval</th>",
        "<td>12%-88%</td>",
    ):
        assert text in page, text


def test_report_escapes_prompts(report_dir):
    out, _ = report_dir
    page = (out / "index.html").read_text()
    assert "<script>document.title='hacked'" not in page
    assert "&lt;script&gt;document.title=&#x27;hacked&#x27;" in page
    assert page.count("<script>") == 1  # only the page's own loader


def test_report_without_optional_parts_still_renders(tmp_path):
    page = render_html({"model": {"name": "m"}, "cases": [], "autoencoder": {"status": "not available (x)"}})
    assert "<table" in page and "not available (x)" in page and "Generated videos per prompt" in page


def test_loss_log_skips_a_line_cut_short(report_dir):
    from cinecube.evaluate.report import read_loss_log

    run_log = report_dir[0].parent / "run" / "metrics.jsonl"
    records = read_loss_log(run_log)
    assert len(records) == 30 and records[0] == (10, 0.1) and records[-1][0] == 300


def test_find_metrics_file_from_run_or_checkpoint(tmp_path):
    run = tmp_path / "run"
    checkpoint = run / "checkpoints" / "step_0000100"
    checkpoint.mkdir(parents=True)
    assert find_metrics_file(run) is None
    (run / "metrics.jsonl").write_text("")
    assert find_metrics_file(run) == (run / "metrics.jsonl").resolve()
    assert find_metrics_file(checkpoint) == (run / "metrics.jsonl").resolve()
    assert find_metrics_file(None) is None


def test_settings_quick_and_refusals():
    quick = settings_for(True)
    full = settings_for(False)
    assert quick["n_prompts"] < full["n_prompts"] and quick["steps"] < full["steps"]
    assert settings_for(True, n_prompts=5)["n_prompts"] == 5
    with pytest.raises(CinecubeError, match="--n-prompts"):
        settings_for(False, n_prompts=0)
    with pytest.raises(CinecubeError, match="--steps"):
        settings_for(False, steps=0)


def test_eval_all_cli_refuses_bad_settings_before_loading(tmp_path, capsys):
    from cinecube.cli import main

    assert main(["eval", "all", "--out", str(tmp_path / "r"), "--n-prompts", "0"]) == 2
    assert "--n-prompts must be at least 1" in capsys.readouterr().err
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    assert main(["eval", "all", "--out", str(not_a_folder)]) == 2
    assert "is not a folder" in capsys.readouterr().err


@needs_browser
def test_report_renders_in_headless_chromium_with_playable_videos(report_dir):
    out, _ = report_dir
    dom = render_dom(out / "index.html")
    body = re.search(r"<body[^>]*>", dom).group(0)
    assert 'data-videos-total="5"' in body
    assert 'data-videos-loaded="5"' in body and 'data-videos-ready="ok"' in body, body
    assert "[5/5 videos loaded]" in dom
    assert dom.count("<table") >= 5 and "FVD (I3D 400-d logits)" in dom
    assert "hacked" not in re.search(r"<title>(.*?)</title>", dom).group(1)


@needs_browser
def test_headless_check_catches_a_video_that_does_not_play(report_dir):
    out, _ = report_dir
    (out / "videos" / "case_001_truth.mp4").write_bytes(b"not a video at all" * 100)
    body = re.search(r"<body[^>]*>", render_dom(out / "index.html")).group(0)
    assert 'data-videos-ready="error"' in body and 'data-videos-failed="1"' in body, body


@pytest.mark.slow
def test_eval_all_quick_end_to_end(tmp_path, capsys):
    from cinecube.cli import main

    out = tmp_path / "report"
    assert main(["eval", "all", "--quick", "--n-prompts", "2", "--fid-frames", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "FVD (logits)" in printed and "wrote" in printed
    results = json.loads((out / "report.json").read_text())
    assert results["adherence"]["n_cases"] == 2
    assert results["fvd"]["logits"]["n_a"] == 2 and results["fid"]["n_a"] == 4
    assert results["fvd"]["logits"]["floor"] >= 0 and results["fid"]["floor"] >= 0
    assert results["timing"]["videos"] == 2 and results["timing"]["mean_seconds_per_video"] > 0
    assert results["autoencoder"]["status"]
    for case in results["cases"]:
        assert (out / case["videos"][0]["path"]).is_file() and (out / case["truth"]).is_file()
    if _browser() is not None:
        body = re.search(r"<body[^>]*>", render_dom(out / "index.html")).group(0)
        assert 'data-videos-ready="ok"' in body and 'data-videos-loaded="4"' in body, body
