"""Smoke tests of the benchmark suite: the table's structure and finite, positive ratios.

No timings are asserted; the quick sizes make the figures themselves meaningless.
"""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks import packing, run
from cinecube.config import PRESETS
from cinecube.patches import pack
from cinecube.transformer import DiffusionTransformer

ROOT = Path(__file__).resolve().parent.parent
COLUMNS = "| figure | cinecube | reference | ratio | target | met? |"


def check_rows(results):
    rows = run.rows(results)
    assert rows, "the table is empty"
    for r in rows:
        assert set(r) == {"figure", "cinecube", "reference", "ratio", "target", "met", "unit"}
        assert isinstance(r["figure"], str) and r["figure"]
        assert math.isfinite(r["cinecube"]) and r["cinecube"] > 0, r
        if r["ratio"] is not None:
            assert math.isfinite(r["ratio"]) and r["ratio"] > 0, r
            assert math.isfinite(r["reference"]) and r["reference"] > 0, r
        assert (r["met"] is None) == (r["target"] is None)
    table = run.markdown({"rows": rows})
    lines = table.strip().splitlines()
    assert lines[0] == COLUMNS
    assert len(lines) == 2 + len(rows)
    assert all(line.count("|") == 7 for line in lines)
    return rows


def test_quick_cases_give_a_well_formed_table():
    results = {"matmul_peak_flop_per_s": {"fp32": 1e9, "bf16": 2e9}}
    for name in ["training", "packing", "autoencoder:pixel"]:
        results[name] = run.run_case(name, quick=True)
    rows = check_rows(results)
    figures = " ".join(r["figure"] for r in rows)
    for expected in ("diffusers CogVideoX", "MFU cinecube", "packing vs padding", "bucketing", "pixel autoencoder"):
        assert expected in figures
    targets = [r for r in rows if r["target"] is not None]
    assert {r["target"] for r in targets} == {1.3, 0.65, 1.5}


def test_padding_baseline_computes_the_same_as_packing():
    """The padded baseline (dense attention + key-padding mask) must be the same model: equal
    outputs on the real tokens, so its speed is a fair reference."""
    torch.manual_seed(0)
    model = DiffusionTransformer(PRESETS["tiny"]).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.05)
    videos = [torch.randn(3, 4, 8, 8), torch.randn(3, 2, 8, 16)]
    batch = pack(videos, PRESETS["tiny"].patch_size)
    text, mask = torch.randn(2, 5, 384), torch.ones(2, 5, dtype=torch.bool)
    t = torch.tensor([0.3, 0.8])
    for training in (False, True):  # inference runs the fused kernel, CPU training plain matmuls
        with torch.set_grad_enabled(training):
            check_padded_equals_packed(model, batch, text, mask, t)


def check_padded_equals_packed(model, batch, text, mask, t):
    """The model on the packed batch and on the same videos padded to one length agree."""
    packed = model(batch.tokens, batch.positions, batch.segment_ids, t[batch.segment_ids], text, mask)
    longest = max(batch.lengths)
    tokens = torch.zeros(2, longest, batch.tokens.shape[1])
    positions = torch.zeros(2, longest, 3)
    valid = torch.zeros(2, longest, dtype=torch.bool)
    for i, (seq, pos) in enumerate(zip(batch.tokens.split(batch.lengths), batch.positions.split(batch.lengths))):
        tokens[i, : len(seq)], positions[i, : len(seq)], valid[i, : len(seq)] = seq, pos, True
    segment_ids = torch.arange(2).repeat_interleave(longest)
    with packing.key_padding_self_attention(valid):
        padded = model(
            tokens.view(-1, tokens.shape[-1]), positions.view(-1, 3), segment_ids, t[segment_ids], text, mask
        )
    torch.testing.assert_close(padded[valid.view(-1)], packed, atol=1e-5, rtol=1e-4)


def test_mix_covers_the_three_aspect_ratios_and_durations():
    sizes = packing.sample_mix(60, seed=0)
    assert {(h, w) for _, h, w in sizes} == set(packing.CANVASES.values())
    frames = [f for f, _, _ in sizes]
    assert min(frames) >= 1 and max(frames) <= packing.MAX_FRAMES and len(set(frames)) > 10
    assert sizes == packing.sample_mix(60, seed=0)


@pytest.mark.slow
def test_the_command_writes_json_and_markdown(tmp_path):
    out = tmp_path / "bench.json"
    subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--out", str(out)],
        check=True,
        cwd=ROOT,
        capture_output=True,
    )
    results = json.loads(out.read_text())
    check_rows(results)
    assert results["quick"] is True
    assert COLUMNS in out.with_suffix(".md").read_text()


def test_report_names_the_machine_of_every_part():
    """A run refreshed with --only on another machine keeps naming the first machine for the
    cases it measured."""

    def stamp(cpu, started, cases):
        return {
            "started": started,
            "cases": cases,
            "machine": {
                "cpu": cpu,
                "cores": 2,
                "torch_threads": 2,
                "torch": "2.13.0+cpu",
                "cpu_capability": "AVX512",
                "load_average_at_start": [0.5, 0.6, 0.7],
            },
        }

    first, second = (
        stamp("CPU one", "2026-01-01T00:00:00Z", ["training", "packing"]),
        stamp("CPU two", "2026-01-02T00:00:00Z", ["packing"]),
    )
    results = {
        "parts": [first, second],
        "machine": second["machine"],
        "started": second["started"],
        "quick": False,
        "matmul_peak_flop_per_s": {"fp32": 1e11, "bf16": 2e11},
    }
    text = run.report(results, "TABLE")
    assert "in\n2 parts" in text
    assert "2026-01-01T00:00:00Z: training, packing; on CPU one" in text
    assert "2026-01-02T00:00:00Z: packing; on CPU two" in text
    assert text.rstrip().endswith("TABLE")
