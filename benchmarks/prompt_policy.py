"""Prompt policy: measured denial of the red-team sets and false denial of the benign sets.

    python benchmarks/prompt_policy.py [--json out.json]

Two pairs of sets, neither containing the classifier's curated examples:
  shipped   redteam.jsonl / benign.txt: the sets the blocklist and threshold were tuned on
            (the tests hold the policy to 100 % and <= 2 % on them);
  held-out  redteam_heldout.jsonl / benign_heldout.txt: written before tuning, never tuned on.
Each stage is also measured alone (blocklist only, classifier only), and the latency of a
check after the text encoder is loaded.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import defaultdict

from cinecube.safety.prompts import CATEGORIES, PromptPolicy, load_benign, load_redteam


def denial_rates(policy: PromptPolicy, rows: list[dict]) -> dict[str, tuple[int, int]]:
    by_category: dict[str, list[bool]] = defaultdict(list)
    for row in rows:
        by_category[row["category"]].append(not policy.check(row["prompt"]).allowed)
    return {c: (sum(v), len(v)) for c, v in by_category.items()}


def false_denials(policy: PromptPolicy, prompts: list[str]) -> list[tuple[str, str]]:
    out = []
    for p in prompts:
        d = policy.check(p)
        if not d.allowed:
            out.append((p, d.reason))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()

    t0 = time.perf_counter()
    full = PromptPolicy()
    full.check("warm up the text encoder")
    load_s = time.perf_counter() - t0
    stages = {
        "policy": full,
        "blocklist only": PromptPolicy(use_classifier=False),
        "classifier only": PromptPolicy(use_blocklist=False, encoder=full.classifier.encoder),
    }
    sets = {"shipped": ("redteam.jsonl", "benign.txt"), "held-out": ("redteam_heldout.jsonl", "benign_heldout.txt")}
    figures: dict = {"load_s": round(load_s, 2)}

    for set_name, (red_file, benign_file) in sets.items():
        red, benign = load_redteam(red_file), load_benign(benign_file)
        print(f"\n## {set_name} sets: {red_file} ({len(red)} prompts), {benign_file} ({len(benign)} prompts)\n")
        print(f"| category | {' | '.join(stages)} |")
        print("|---|" + "---:|" * len(stages))
        rates = {name: denial_rates(policy, red) for name, policy in stages.items()}
        for category in CATEGORIES:
            cells = [f"{rates[s][category][0]}/{rates[s][category][1]}" for s in stages]
            print(f"| {category} | {' | '.join(cells)} |")
        totals = {s: (sum(a for a, _ in rates[s].values()), sum(n for _, n in rates[s].values())) for s in stages}
        print(
            "| **red-team denied** | "
            + " | ".join(f"**{a}/{n} ({100 * a / n:.1f} %)**" for a, n in totals.values())
            + " |"
        )
        fps = {name: false_denials(policy, benign) for name, policy in stages.items()}
        print(
            "| **benign falsely denied** | "
            + " | ".join(f"**{len(f)}/{len(benign)} ({100 * len(f) / len(benign):.1f} %)**" for f in fps.values())
            + " |"
        )
        for prompt, reason in fps["policy"]:
            print(f"  false denial: {prompt!r} -> {reason}")
        missed = [r for r in red if full.check(r["prompt"]).allowed]
        for r in missed:
            print(f"  missed: [{r['category']}/{r['variant']}] {r['prompt']!r}")
        figures[set_name] = {
            "red_team": {s: rates[s] for s in stages},
            "benign_false_denials": {s: [len(f), len(benign)] for s, f in fps.items()},
            "missed": [r["prompt"] for r in missed],
        }

    # Latency of a fresh prompt (not in the encoder's cache) after loading.
    times = []
    for i in range(20):
        t = time.perf_counter()
        full.check(f"a small boat number {i} drifting on a calm lake at dusk")
        times.append(1000 * (time.perf_counter() - t))
    figures["check_ms_median"] = round(statistics.median(times), 1)
    print(
        f"\nload {load_s:.1f} s; check latency median {statistics.median(times):.1f} ms "
        f"(max {max(times):.1f} ms) over 20 new prompts"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=1)


if __name__ == "__main__":
    main()
