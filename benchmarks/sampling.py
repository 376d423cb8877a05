"""Sampling seconds per video with the bundled model, and autoencoder frames per second.

Each function here runs in its own subprocess (see run.py), so its resident-set high-water
mark (getrusage ru_maxrss) is the peak of that benchmark alone; `rss_before_mib` is the
resident set after loading, before the measured work.
"""

from __future__ import annotations

import time

import torch

from .common import count_flops, current_rss_mib, matmul_peak, peak_rss_mib

PROMPT = "a red circle moving right on a black background"


def sampling(height: int, width: int, frames: int, steps: list[int], quick: bool, budget_s: float = 150.0) -> dict:
    """Seconds per video (Euler, guidance 3) for each step count, FLOPs per step and peak RSS.

    A step count whose estimated time (from the measured per-step time) exceeds `budget_s`
    is not run; its time is estimated from the fixed part plus steps x the per-step time and
    marked `estimated`.
    """
    from cinecube.autoencoder import build_autoencoder, load_model_autoencoder
    from cinecube.config import PRESETS
    from cinecube.model_folder import load_model_folder, load_weights_into
    from cinecube.pipeline import default_model_dir, generate_video
    from cinecube.text import get_text_encoder
    from cinecube.transformer import DiffusionTransformer

    if quick:
        torch.manual_seed(0)
        config = PRESETS["tiny"]
        model = DiffusionTransformer(config)
        autoencoder = build_autoencoder(config.autoencoder)
    else:
        checkpoint = load_model_folder(default_model_dir())
        config = checkpoint.model_config
        model = DiffusionTransformer(config)
        load_weights_into(model, checkpoint.weights, str(checkpoint.path))
        autoencoder = load_model_autoencoder(checkpoint.path, config)  # the identity or its trained one
    model.eval()
    autoencoder.eval()
    text_encoder = get_text_encoder(config.text_max_tokens)

    def video(n_steps: int):
        return generate_video(
            model, autoencoder, text_encoder, PROMPT, frames, height, width, steps=n_steps, guidance=3.0, seed=0
        )

    video(2)  # warm-up: text encoder, allocator, kernels
    rss_before = current_rss_mib()
    # Per-step FLOPs: the difference of a 2-step and a 1-step video (text encoding cancels).
    flops_1, flops_2 = count_flops(lambda: video(1)), count_flops(lambda: video(2))
    flops_per_step = flops_2 - flops_1
    results, measured = {}, {}
    peak_before = matmul_peak(512 if quick else 2048, 3)
    for n in sorted(steps):
        estimate = _estimate(measured, n)
        if estimate > budget_s:
            results[n] = {"seconds": estimate, "estimated": True}
            continue
        start = time.perf_counter()
        video(n)
        measured[n] = time.perf_counter() - start
        results[n] = {"seconds": measured[n], "estimated": False}
    for n, r in results.items():
        r["flops"] = flops_1 - flops_per_step + n * flops_per_step
    return {
        "height": height,
        "width": width,
        "frames": frames,
        "tokens": model_tokens(config, autoencoder, frames, height, width),
        "flops_per_step": flops_per_step,
        "steps": {str(n): r for n, r in results.items()},
        "matmul_peak_flop_per_s": _best_peaks(peak_before, matmul_peak(512 if quick else 2048, 3)),
        "rss_before_mib": rss_before,
        "peak_rss_mib": peak_rss_mib(),
        "memory": "getrusage ru_maxrss",
    }


def _best_peaks(*measurements: dict[str, float]) -> dict[str, float]:
    """The matmul peak measured next to a benchmark (before and after it): the best of each."""
    return {k: max(m[k] for m in measurements if k in m) for k in measurements[0]}


def _estimate(measured: dict[int, float], steps: int) -> float:
    """Seconds of a `steps`-step video from the measured ones: fixed part + steps x per step."""
    if not measured:
        return 0.0
    (n1, s1), *rest = sorted(measured.items())
    if not rest:
        return s1 * steps / n1
    n2, s2 = rest[0]
    per_step = (s2 - s1) / (n2 - n1)
    return max(0.0, s1 - n1 * per_step) + steps * per_step


def model_tokens(config, autoencoder, frames: int, height: int, width: int) -> int:
    """Tokens of one generated video (the latent frames that cover `frames`)."""
    from cinecube.pipeline import tokens_for_size

    return tokens_for_size(config, autoencoder, autoencoder.frames_covering(frames), height, width)


def autoencoder_fps(preset: str, height: int, width: int, frames: int, repeats: int = 2) -> dict:
    """Encode and decode frames per second of one autoencoder (untrained weights: speed only)."""
    from cinecube.autoencoder import CausalVideoAutoencoder, PixelAutoencoder
    from cinecube.config import AUTOENCODER_PRESETS

    from .common import best_time

    torch.manual_seed(0)
    ae = (PixelAutoencoder() if preset == "pixel" else CausalVideoAutoencoder(AUTOENCODER_PRESETS[preset])).eval()
    video = torch.rand(3, frames, height, width) * 2 - 1
    with torch.no_grad():
        latent = ae.encode(video)
        rss_before = current_rss_mib()
        encode_s = best_time(lambda: ae.encode(video), repeats, warmup=0)
        decode_s = best_time(lambda: ae.decode(latent), repeats, warmup=0)
        peaks = _best_peaks(matmul_peak(512, 2) if frames < 9 else matmul_peak(), {})
        encode_flops = count_flops(lambda: ae.encode(video))
        decode_flops = count_flops(lambda: ae.decode(latent))
    return {
        "preset": preset,
        "height": height,
        "width": width,
        "frames": frames,
        "latent_shape": list(latent.shape),
        "parameters": sum(p.numel() for p in ae.parameters()),
        "encode_fps": frames / encode_s,
        "decode_fps": frames / decode_s,
        "encode_seconds": encode_s,
        "decode_seconds": decode_s,
        "encode_flops": encode_flops,
        "decode_flops": decode_flops,
        "matmul_peak_flop_per_s": peaks,
        "rss_before_mib": rss_before,
        "peak_rss_mib": peak_rss_mib(),
        "memory": "getrusage ru_maxrss",
    }
