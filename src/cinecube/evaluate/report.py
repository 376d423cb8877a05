"""One evaluation of a model, written as report.json and a static HTML report.

``evaluate_all`` generates a video for each held-out prompt (the adherence cases), and measures:

* prompt adherence per attribute (``evaluate/adherence.py``),
* FVD (I3D, ``evaluate/fvd.py``) and per-frame FID (TF-Inception, ``evaluate/fid.py``) of the
  generated videos against the shapes world's own renders of the same prompts,
* generation time per video,
* autoencoder PSNR/SSIM on the held-out real clips when the model has a learned autoencoder,
* optionally, the I3D port's check on the real clips (top-5 Kinetics labels, FVD between the
  halves of one clip vs between clips).

``write_report`` turns the results into ``report.json`` and ``index.html``: a grid of the
generated videos per prompt beside the ground-truth render (H.264 mp4 files in ``videos/``),
metric tables and PNG plots (the run's loss curve when the model folder is a training run,
adherence per attribute, generation time). A small script in the page marks
``<body data-videos-ready="ok">`` once every video has fired ``loadeddata``, so a headless
browser can check that the page renders with playable videos.
"""

from __future__ import annotations

import html
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from cinecube.errors import CinecubeError

REPORT_JSON = "report.json"
REPORT_HTML = "index.html"
VIDEO_DIR = "videos"
FPS = 8.0


# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------


def settings_for(
    quick: bool,
    n_prompts: int | None = None,
    steps: int | None = None,
    fid_frames: int | None = None,
    i3d_check: bool | None = None,
) -> dict[str, Any]:
    """Defaults: a real evaluation, or ``quick`` (a few prompts, few steps) for tests and smoke runs."""
    base = (
        {"n_prompts": 3, "steps": 4, "fid_frames": 3, "i3d_check": False, "ae_max_frames": 9}
        if quick
        else {"n_prompts": 16, "steps": 20, "fid_frames": 4, "i3d_check": True, "ae_max_frames": 33}
    )
    for key, value in (
        ("n_prompts", n_prompts),
        ("steps", steps),
        ("fid_frames", fid_frames),
        ("i3d_check", i3d_check),
    ):
        if value is not None:
            base[key] = value
    if base["n_prompts"] < 1:
        raise CinecubeError(f"--n-prompts must be at least 1, got {base['n_prompts']}")
    if not 1 <= base["steps"] <= 1000:
        raise CinecubeError(f"--steps must be in 1..1000, got {base['steps']}")
    if base["fid_frames"] is not None and base["fid_frames"] < 1:
        raise CinecubeError(f"--fid-frames must be at least 1, got {base['fid_frames']}")
    base["quick"] = quick
    return base


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------


def find_metrics_file(model: str | os.PathLike | None) -> Path | None:
    """metrics.jsonl of the training run a model folder belongs to (a run, or a checkpoint in one)."""
    if model is None:
        return None
    path = Path(model).resolve()
    for folder in (path, path.parent, path.parent.parent):
        candidate = folder / "metrics.jsonl"
        if candidate.is_file():
            return candidate
    return None


def read_loss_log(metrics_file: Path) -> list[tuple[int, float]]:
    """(step, loss) pairs of a run's metrics.jsonl, skipping lines a running job left unfinished."""
    records = []
    for line in Path(metrics_file).read_text().splitlines():
        try:
            record = json.loads(line)
            records.append((int(record["step"]), float(record["loss"])))
        except (ValueError, KeyError, TypeError):
            continue
    return records


def _loss_summary(metrics_file: Path) -> dict[str, Any]:
    records = read_loss_log(metrics_file)
    if not records:
        return {"records": 0}
    losses = [loss for _, loss in records]
    return {
        "records": len(records),
        "last_step": records[-1][0],
        "last_loss": losses[-1],
        "mean_loss_last_10_logs": float(np.mean(losses[-10:])),
        "metrics_file": str(metrics_file),
    }


def _autoencoder_metrics(pipe: Any, max_frames: int) -> dict[str, Any]:
    kind = getattr(pipe.autoencoder.config, "kind", "unknown")
    if kind == "pixel":
        return {"status": "not applicable: the model works in pixel space (identity autoencoder)", "kind": kind}
    try:
        from cinecube.evaluate.autoencoder import evaluate_autoencoder
    except ImportError as error:
        return {"status": f"not available ({error})", "kind": kind}
    result = evaluate_autoencoder(pipe.autoencoder, clip_paths=None, max_frames=max_frames)
    result["status"] = "ok"
    return result


def check_settings(
    quick: bool,
    n_prompts: int | None = None,
    steps: int | None = None,
    fid_frames: int | None = None,
    videos_per_prompt: int = 1,
) -> None:
    """Refuse bad settings in one line before any work (`evaluate_all` checks them again)."""
    settings_for(quick, n_prompts, steps, fid_frames)
    if videos_per_prompt < 1:
        raise CinecubeError(f"--videos-per-prompt must be at least 1, got {videos_per_prompt}")


REPORT_ENTRIES = (REPORT_JSON, REPORT_HTML, VIDEO_DIR, "loss.png", "adherence.png", "timing.png")


def is_report_folder(path: Path) -> bool:
    """Whether a folder holds nothing but a report `evaluate_all` wrote (so --force may replace it)."""
    return (path / REPORT_JSON).is_file() and all(e.name in REPORT_ENTRIES for e in Path(path).iterdir())


def evaluate_all(
    out_dir: str | os.PathLike,
    model: str | None = None,
    *,
    published_as: str | os.PathLike | None = None,
    quick: bool = False,
    n_prompts: int | None = None,
    steps: int | None = None,
    guidance: float = 3.0,
    seed: int = 1234,
    videos_per_prompt: int = 1,
    fid_frames: int | None = None,
    i3d_check: bool | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Generate, measure everything, write report.json + index.html into ``out_dir``; returns the results.

    ``published_as``: where the caller will move ``out_dir`` once it is whole (a staged
    folder's final name), so the audit log records the videos where they will be."""
    from cinecube.data.shapes import render
    from cinecube.evaluate.adherence import TARGETS, evaluate_adherence, heldout_cases
    from cinecube.pipeline import Pipeline
    from cinecube.video_io import write_video

    check_settings(quick, n_prompts, steps, fid_frames, videos_per_prompt)
    settings = settings_for(quick, n_prompts, steps, fid_frames, i3d_check)
    settings.update(guidance=guidance, seed=seed, videos_per_prompt=videos_per_prompt)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / VIDEO_DIR).mkdir(exist_ok=True)
    stage_seconds: dict[str, float] = {}
    started = time.perf_counter()

    t0 = time.perf_counter()
    pipe = Pipeline.from_pretrained(model)
    stage_seconds["load_model"] = time.perf_counter() - t0
    cases = heldout_cases(settings["n_prompts"], seed=seed)

    # Generation, with adherence measured on each case's first video.
    generated: list[np.ndarray] = []
    truths: list[np.ndarray] = []
    case_rows: list[dict[str, Any]] = []
    timings: list[dict[str, Any]] = []

    def generate(case: Any) -> np.ndarray:
        i = len(case_rows)
        # A latent model gets the nearest size it allows (e.g. 16-px cells), recorded in the report.
        frames, height, width = pipe.nearest_allowed(case.frames, case.height, case.width)
        videos, first = [], None
        for k in range(videos_per_prompt):
            t, cpu = time.perf_counter(), time.process_time()
            result = pipe(
                case.prompt,
                frames=frames,
                height=height,
                width=width,
                steps=settings["steps"],
                guidance=guidance,
                seed=case.seed + k,
                progress=False,
            )
            video = result.frames  # metrics see the model's own frames
            seconds = time.perf_counter() - t
            timings.append(
                {
                    "case": i,
                    "seed": case.seed + k,
                    "seconds": seconds,
                    "cpu_seconds": time.process_time() - cpu,
                    "frames": frames,
                    "height": height,
                    "width": width,
                    "tokens": pipe.num_tokens(frames, height, width),
                }
            )
            name = f"case_{i:03d}.mp4" if k == 0 else f"case_{i:03d}_seed{k}.mp4"
            # Published like any output: reviewed, watermarked, signed, logged.
            result.fps = FPS
            final = Path(published_as) / VIDEO_DIR / name if published_as is not None else None
            result.save(out / VIDEO_DIR / name, published_as=final)
            videos.append({"path": f"{VIDEO_DIR}/{name}", "seed": case.seed + k, "seconds": round(seconds, 3)})
            first = video if first is None else first
        truth = render(case.scene)  # (T, H, W, 3) the perfect answer
        write_video(out / VIDEO_DIR / f"case_{i:03d}_truth.mp4", truth, fps=FPS)
        generated.append(first)
        truths.append(truth)
        case_rows.append(
            {
                "index": i,
                "prompt": case.prompt,
                "seed": case.seed,
                "size": [frames, height, width],
                "case_size": [case.frames, case.height, case.width],
                "videos": videos,
                "truth": f"{VIDEO_DIR}/case_{i:03d}_truth.mp4",
            }
        )
        return first

    # One-off costs (text encoder start-up, first-call allocations) stay out of the timings.
    t0 = time.perf_counter()
    warm = pipe.nearest_allowed(cases[0].frames, cases[0].height, cases[0].width)
    pipe("warm-up", frames=warm[0], height=warm[1], width=warm[2], steps=1, guidance=guidance, progress=False)
    stage_seconds["warm_up"] = time.perf_counter() - t0

    log(f"generating {len(cases)} prompts x {videos_per_prompt} video(s), {settings['steps']} steps")
    t0 = time.perf_counter()
    adherence = evaluate_adherence(generate, cases, progress=False)
    stage_seconds["generate_and_adherence"] = time.perf_counter() - t0
    for row, record in zip(case_rows, adherence.records):
        row["results"] = record["results"]
        row["expected"] = record["expected"]
        row["detected"] = [{k: d[k] for k in ("color", "shape", "direction")} for d in record["detected"]]

    # The floor a perfect model would reach at this sample size: the world's renders of these
    # prompts against its renders of as many other held-out prompts.
    others = [render(c.scene) for c in heldout_cases(2 * len(cases), seed=seed)[len(cases) :]]

    log("FVD (I3D) of generated vs ground-truth renders")
    t0 = time.perf_counter()
    from cinecube.evaluate.fvd import frechet_distance
    from cinecube.evaluate.i3d import i3d_outputs

    i3d = {
        name: i3d_outputs(videos) for name, videos in (("generated", generated), ("truth", truths), ("others", others))
    }
    fvd: dict[str, Any] = {}
    for index, feature in enumerate(("logits", "pool")):
        fvd[feature] = frechet_distance(i3d["generated"][index], i3d["truth"][index], feature).to_json()
        fvd[feature]["floor"] = frechet_distance(i3d["others"][index], i3d["truth"][index], feature).value
    stage_seconds["fvd"] = time.perf_counter() - t0

    log("per-frame FID (TF-Inception) of generated vs ground-truth renders")
    t0 = time.perf_counter()
    from cinecube.evaluate.fid import frame_features

    frames_per_video = settings["fid_frames"]
    inception = {
        name: frame_features(videos, frames_per_video)
        for name, videos in (("generated", generated), ("truth", truths), ("others", others))
    }
    fid_result = frechet_distance(inception["generated"], inception["truth"], "inception-pool3").to_json()
    fid_result["floor"] = frechet_distance(inception["others"], inception["truth"], "inception-pool3").value
    fid_result["frames_per_video"] = frames_per_video or "all"
    stage_seconds["fid"] = time.perf_counter() - t0

    log("autoencoder PSNR/SSIM")
    t0 = time.perf_counter()
    autoencoder = _autoencoder_metrics(pipe, settings["ae_max_frames"])
    stage_seconds["autoencoder"] = time.perf_counter() - t0

    i3d_check = None
    if settings["i3d_check"]:
        log("I3D check on the real clips (top-5 labels, FVD of clip halves)")
        t0 = time.perf_counter()
        from cinecube.evaluate.fvd import real_clip_validation

        i3d_check = real_clip_validation(windows_per_half=2)
        stage_seconds["i3d_check"] = time.perf_counter() - t0

    seconds = np.array([t["seconds"] for t in timings])
    frames_made = np.array([t["frames"] for t in timings])
    timing = {
        "videos": len(timings),
        "steps": settings["steps"],
        "mean_seconds_per_video": float(seconds.mean()),
        "median_seconds_per_video": float(np.median(seconds)),
        "max_seconds_per_video": float(seconds.max()),
        "frames_per_second": float(frames_made.sum() / seconds.sum()),
        "mean_cpu_seconds_per_video": float(np.mean([t["cpu_seconds"] for t in timings])),
        "load_average": _load_average(),
        "per_video": timings,
        "device": "cpu",
        "torch_threads": _torch_threads(),
    }

    metrics_file = find_metrics_file(model)
    results: dict[str, Any] = {
        "format": "cinecube-eval/1",
        "created": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "model": {
            "name": pipe.name,
            "path": str(model) if model else "bundled default",
            "weights_sha256": pipe.weights_sha256,
            "autoencoder": getattr(pipe.autoencoder.config, "kind", "unknown"),
        },
        "settings": settings,
        "adherence": {k: v for k, v in adherence.to_json().items() if k != "records"},
        "fvd": fvd,
        "fid": fid_result,
        "autoencoder": autoencoder,
        "timing": timing,
        "i3d_check": i3d_check,
        "training": _loss_summary(metrics_file) if metrics_file else None,
        "cases": case_rows,
        "targets": dict(TARGETS),
    }
    stage_seconds["total"] = time.perf_counter() - started
    results["stage_seconds"] = {k: round(v, 2) for k, v in stage_seconds.items()}
    write_report(out, results, metrics_file=metrics_file)
    return results


def _load_average() -> float | None:
    """1-minute load average: wall-clock timings mean little when it exceeds the core count."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


# --------------------------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------------------------


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_loss(metrics_file: Path, out_png: Path) -> Path | None:
    """The run's training loss (metrics.jsonl: one {"step", "loss", ...} per line) with a running mean."""
    records = read_loss_log(metrics_file)
    if not records:
        return None
    plt = _pyplot()
    steps, losses = np.array(records).T
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(steps, losses, alpha=0.35, label="loss")
    if len(losses) >= 10:
        k = max(5, len(losses) // 30)
        ax.plot(steps[k - 1 :], np.convolve(losses, np.ones(k) / k, mode="valid"), label=f"mean of {k}")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_yscale("log")
    ax.set_title("training loss of the run")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return out_png


def plot_adherence(accuracy: dict[str, float | None], targets: dict[str, float], out_png: Path) -> Path:
    """Bar per attribute (accuracy) with its target as a tick mark."""
    plt = _pyplot()
    names = list(accuracy)
    values = [accuracy[n] if accuracy[n] is not None else 0.0 for n in names]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    bars = ax.bar(names, values, color=["#4c8bf5" if accuracy[n] is not None else "#bbbbbb" for n in names])
    for i, name in enumerate(names):
        if name in targets:
            ax.plot([i - 0.4, i + 0.4], [targets[name]] * 2, color="#d33", lw=2, label="target" if i == 0 else None)
        label = "n/a" if accuracy[name] is None else f"{accuracy[name]:.0%}"
        ax.text(bars[i].get_x() + bars[i].get_width() / 2, values[i] + 0.02, label, ha="center", fontsize=9)
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("accuracy")
    ax.set_title("prompt adherence per attribute")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return out_png


def plot_timing(per_video: list[dict[str, Any]], out_png: Path) -> Path:
    """Generation seconds per video against its token count."""
    plt = _pyplot()
    tokens = [t["tokens"] for t in per_video]
    seconds = [t["seconds"] for t in per_video]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.scatter(tokens, seconds, color="#2a9d5c")
    for t in per_video:
        ax.annotate(
            f"{t['frames']}x{t['height']}x{t['width']}",
            (t["tokens"], t["seconds"]),
            fontsize=7,
            xytext=(3, 3),
            textcoords="offset points",
        )
    ax.set_xlabel("transformer tokens per video")
    ax.set_ylabel("seconds per video")
    ax.set_title("generation time")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return out_png


# --------------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------------

_CSS = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; max-width: 1200px; }
h1 { margin-bottom: 4px; } .sub { color: #666; margin-top: 0; }
table { border-collapse: collapse; margin: 8px 0 20px; }
th, td { border: 1px solid #ccc; padding: 4px 10px; text-align: left; font-size: 14px; }
th { background: #f2f2f2; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.ok { color: #1a7f37; } .below { color: #c62828; }
.plots img { max-width: 32%; margin-right: 1%; border: 1px solid #ddd; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(360px, 1fr)); gap: 14px; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 10px; }
.card p { margin: 0 0 6px; font-size: 14px; }
.card .videos { display: flex; gap: 8px; flex-wrap: wrap; }
.card figure { margin: 0; width: 160px; } .card figcaption { font-size: 12px; color: #666; text-align: center; }
video { width: 160px; height: auto; image-rendering: pixelated; background: #000; }
.flags span { display: inline-block; margin-right: 6px; font-size: 13px; }
.note { color: #666; font-size: 13px; }
"""

# Marks the page once every <video> has decoded its first frame (or failed), so a headless
# browser (and a reader) can tell that the videos really play.
_SCRIPT = """
(function () {
  var videos = Array.prototype.slice.call(document.querySelectorAll('video'));
  var loaded = 0, failed = 0, body = document.body;
  body.setAttribute('data-videos-total', videos.length);
  function update() {
    body.setAttribute('data-videos-loaded', loaded);
    body.setAttribute('data-videos-failed', failed);
    if (loaded + failed === videos.length) {
      body.setAttribute('data-videos-ready', failed ? 'error' : 'ok');
      document.title = document.title.replace(/ \\[.*\\]$/, '') +
        ' [' + loaded + '/' + videos.length + ' videos loaded]';
    }
  }
  videos.forEach(function (v) {
    if (v.readyState >= 2) { loaded += 1; return; }
    v.addEventListener('loadeddata', function () { loaded += 1; update(); }, { once: true });
    v.addEventListener('error', function () { failed += 1; update(); }, { once: true });
  });
  update();
})();
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _table(headers: list[str], rows: list[list[Any]], cls: str = "") -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for cell in row:
            if isinstance(cell, tuple):  # (html already escaped, css class)
                cells.append(f'<td class="{cell[1]}">{cell[0]}</td>')
            else:
                num = isinstance(cell, (int, float)) and not isinstance(cell, bool)
                cells.append(f"<td{' class=num' if num else ''}>{_e(_fmt(cell))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _video(path: str, caption: str) -> str:
    return (
        f'<figure><video src="{_e(path)}" muted loop autoplay playsinline preload="auto"></video>'
        f"<figcaption>{_e(caption)}</figcaption></figure>"
    )


def _adherence_section(results: dict[str, Any]) -> str:
    from cinecube.evaluate.adherence import format_interval

    adh = results.get("adherence") or {}
    if not adh:
        return ""
    targets = adh.get("targets", results.get("targets", {}))
    rows = []
    for name, acc in adh["accuracy"].items():
        target = targets.get(name)
        if acc is None:
            status = ("n/a", "")
        else:
            status = ("meets target", "ok") if target is None or acc >= target else ("below target", "below")
        rows.append(
            [
                name,
                "n/a" if acc is None else f"{acc:.1%}",
                format_interval((adh.get("interval_95") or {}).get(name)),
                f"{adh['passed'][name]}/{adh['scored'][name]}",
                "" if target is None else f"{target:.0%}",
                status,
            ]
        )
    rows.append(["all attributes", f"{adh['all_pass']:.1%}", "", f"{adh['n_cases']} cases", "", ("", "")])
    html = "<h2>Prompt adherence</h2>" + _table(
        ["attribute", "accuracy", "95 % interval", "passed", "target", ""], rows
    )
    by_objects = adh.get("by_objects") or {}
    if len(by_objects) > 1:
        names = list(adh["accuracy"])
        group_rows = [
            [n, g["cases"]] + ["n/a" if g["accuracy"][a] is None else f"{g['accuracy'][a]:.0%}" for a in names]
            for n, g in by_objects.items()
        ]
        html += "<h3>By objects asked for</h3>" + _table(["objects", "cases"] + names, group_rows)
    return html


def _frechet_rows(results: dict[str, Any]) -> list[list[Any]]:
    rows = []
    fvd = results.get("fvd") or {}
    labels = {"logits": "FVD (I3D 400-d logits)", "pool": "FVD (I3D 1024-d pooled features)"}
    for key, label in labels.items():
        if key in fvd:
            r = fvd[key]
            rows.append([label, r["value"], r.get("floor"), f"{r['n_a']} vs {r['n_b']} videos", r.get("note", "")])
    fid = results.get("fid")
    if fid:
        rows.append(
            [
                "FID per frame (TF-Inception 2048-d)",
                fid["value"],
                fid.get("floor"),
                f"{fid['n_a']} vs {fid['n_b']} frames ({fid.get('frames_per_video', 'all')} per video)",
                fid.get("note", ""),
            ]
        )
    return rows


def _autoencoder_section(ae: dict[str, Any] | None) -> str:
    if not ae:
        return ""
    if ae.get("status") != "ok":
        return f"<h2>Autoencoder</h2><p class=note>{_e(ae.get('status'))}</p>"
    rows = [
        [c.get("name"), f"{c.get('frames')}x{c.get('height')}x{c.get('width')}", c.get("psnr"), c.get("ssim")]
        for c in ae.get("clips", [])
    ]
    rows.append(["mean", "", ae.get("mean_psnr"), ae.get("mean_ssim")])
    head = f"<p class=note>compression {_e(ae.get('compression', '?'))}, kind {_e(ae.get('kind', '?'))}</p>"
    return (
        "<h2>Autoencoder reconstruction (held-out real clips)</h2>"
        + head
        + _table(["clip", "frames x H x W", "PSNR (dB)", "SSIM"], rows)
    )


def _i3d_section(check: dict[str, Any] | None) -> str:
    if not check:
        return ""
    rows = [[name, ", ".join(f"{label} ({p:.0%})" for label, p in labels)] for name, labels in check["top5"].items()]
    out = "<h2>I3D check on real clips</h2><p class=note>Top-5 Kinetics-400 labels (first window of each clip)</p>"
    out += _table(["clip", "top-5 labels"], rows)
    summary = check["summary"]
    srows = [
        [feat, s["same_clip_halves_mean"], s["different_clips_mean"], s["same_max"], s["different_min"]]
        for feat, s in summary.items()
    ]
    out += _table(
        ["feature", "FVD same-clip halves (mean)", "FVD different clips (mean)", "same (max)", "different (min)"], srows
    )
    return out + f"<p class=note>{_e(check.get('note', ''))}</p>"


def _cases_section(cases: list[dict[str, Any]]) -> str:
    cards = []
    letters = {"color": "colour", "shape": "shape", "direction": "direction", "count": "count"}
    for case in cases:
        flags = []
        for attr, word in letters.items():
            value = (case.get("results") or {}).get(attr)
            mark, cls = {True: ("pass", "ok"), False: ("fail", "below"), None: ("n/a", "")}[value]
            flags.append(f'<span class="{cls}">{word}: {mark}</span>')
        videos = "".join(
            _video(v["path"], f"generated, seed {v['seed']}, {v['seconds']:.1f} s") for v in case["videos"]
        )
        videos += _video(case["truth"], "ground truth (world render)")
        t, h, w = case["size"]
        cards.append(
            f'<div class="card"><p><b>#{case["index"]}</b> {_e(case["prompt"])}</p>'
            f'<p class="note">{t} frames, {w}x{h}</p><div class="videos">{videos}</div>'
            f'<p class="flags">{"".join(flags)}</p></div>'
        )
    return '<h2>Generated videos per prompt</h2><div class="grid">' + "".join(cards) + "</div>"


def render_html(results: dict[str, Any]) -> str:
    """The report page for ``results`` (paths inside it are relative to the report folder)."""
    model = results.get("model", {})
    settings = results.get("settings", {})
    timing = results.get("timing") or {}
    plots = results.get("plots", {})
    title = f"cinecube evaluation: {model.get('name', '?')}"
    parts = [
        f"<h1>{_e(title)}</h1>",
        f'<p class="sub">{_e(results.get("created", ""))} &middot; model {_e(model.get("path", ""))} '
        f"&middot; sha256 {_e(str(model.get('weights_sha256', ''))[:12])} &middot; autoencoder "
        f"{_e(model.get('autoencoder', '?'))}</p>",
    ]
    setting_rows = [[k, v] for k, v in settings.items()]
    parts.append("<h2>Settings</h2>" + _table(["setting", "value"], setting_rows))
    parts.append(_adherence_section(results))
    frechet = _frechet_rows(results)
    if frechet:
        parts.append(
            "<h2>Distribution distances (generated vs ground-truth renders)</h2>"
            + _table(["metric", "value", "floor", "samples", "note"], frechet)
            + '<p class="note">Lower is better. The floor is the same distance between the world\'s '
            "renders of these prompts and of as many other held-out prompts: what a perfect model "
            "would score at this sample size. FVD uses the deepmind kinetics-i3d weights; values "
            "compare cinecube evaluations with equal sample counts, not published figures.</p>"
        )
    if timing:
        parts.append(
            "<h2>Generation time</h2>"
            + _table(
                [
                    "videos",
                    "steps",
                    "mean s / video",
                    "median s / video",
                    "max s / video",
                    "CPU s / video",
                    "frames / s",
                    "threads",
                    "load average",
                ],
                [
                    [
                        timing["videos"],
                        timing["steps"],
                        timing["mean_seconds_per_video"],
                        timing["median_seconds_per_video"],
                        timing["max_seconds_per_video"],
                        timing.get("mean_cpu_seconds_per_video"),
                        timing["frames_per_second"],
                        timing.get("torch_threads", ""),
                        timing.get("load_average"),
                    ]
                ],
            )
            + '<p class="note">Wall-clock seconds per video after a warm-up call; CPU seconds count all '
            "threads. A load average above the core count means other work shared the processor.</p>"
        )
    training = results.get("training")
    if training and training.get("records"):
        parts.append(
            "<h2>Training run</h2>"
            + _table(
                ["logged points", "last step", "last loss", "mean loss (last 10 logs)"],
                [
                    [
                        training["records"],
                        training["last_step"],
                        training["last_loss"],
                        training["mean_loss_last_10_logs"],
                    ]
                ],
            )
        )
    parts.append(_autoencoder_section(results.get("autoencoder")))
    if plots:
        imgs = "".join(f'<img src="{_e(path)}" alt="{_e(name)} plot">' for name, path in plots.items())
        parts.append(f'<h2>Plots</h2><div class="plots">{imgs}</div>')
    parts.append(_cases_section(results.get("cases", [])))
    parts.append(_i3d_section(results.get("i3d_check")))
    stages = results.get("stage_seconds")
    if stages:
        parts.append("<h2>Evaluation time</h2>" + _table(["stage", "seconds"], [[k, v] for k, v in stages.items()]))
    body = "\n".join(p for p in parts if p)
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
        f"<style>{_CSS}</style></head>\n<body>\n{body}\n<script>{_SCRIPT}</script>\n</body></html>\n"
    )


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def write_report(out_dir: str | os.PathLike, results: dict[str, Any], metrics_file: Path | None = None) -> Path:
    """Plots (PNG), report.json and index.html in ``out_dir``; returns the HTML path.

    ``results["plots"]`` is filled with the plots written: the run's loss curve (when
    ``metrics_file`` is given), adherence per attribute and generation time.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plots: dict[str, str] = {}
    if (
        metrics_file is not None
        and Path(metrics_file).is_file()
        and plot_loss(Path(metrics_file), out / "loss.png") is not None
    ):
        plots["loss"] = "loss.png"
    adh = results.get("adherence")
    if adh and adh.get("accuracy"):
        plot_adherence(adh["accuracy"], adh.get("targets", results.get("targets", {})), out / "adherence.png")
        plots["adherence"] = "adherence.png"
    timing = results.get("timing")
    if timing and timing.get("per_video"):
        plot_timing(timing["per_video"], out / "timing.png")
        plots["timing"] = "timing.png"
    results["plots"] = plots
    _write_atomic(out / REPORT_JSON, json.dumps(results, indent=2, default=_json_default))
    html_path = out / REPORT_HTML
    _write_atomic(html_path, render_html(results))
    return html_path


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def summary_table(results: dict[str, Any]) -> str:
    """A few lines for the terminal."""
    lines = []
    adh = results.get("adherence")
    if adh:
        acc = ", ".join(f"{k} {'n/a' if v is None else f'{v:.0%}'}" for k, v in adh["accuracy"].items())
        lines.append(f"adherence: {acc}; all {adh['all_pass']:.0%} ({adh['n_cases']} cases)")
    for key, r in (results.get("fvd") or {}).items():
        lines.append(
            f"FVD ({key}): {r['value']:.1f}  (floor {r.get('floor', float('nan')):.1f}; "
            f"{r['n_a']} vs {r['n_b']} videos)"
        )
    fid = results.get("fid")
    if fid:
        lines.append(
            f"FID per frame: {fid['value']:.1f}  (floor {fid.get('floor', float('nan')):.1f}; "
            f"{fid['n_a']} vs {fid['n_b']} frames)"
        )
    ae = results.get("autoencoder") or {}
    if ae.get("status") == "ok":
        lines.append(
            f"autoencoder: PSNR {ae.get('mean_psnr', float('nan')):.2f} dB, "
            f"SSIM {ae.get('mean_ssim', float('nan')):.3f}"
        )
    elif ae:
        lines.append(f"autoencoder: {ae.get('status')}")
    timing = results.get("timing")
    if timing:
        lines.append(
            f"generation: {timing['mean_seconds_per_video']:.2f} s per video (mean of {timing['videos']}, "
            f"{timing['steps']} steps)"
        )
    return "\n".join(lines)
