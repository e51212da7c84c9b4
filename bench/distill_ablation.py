"""Which distillation recipe works best here: one small student, one budget, one knob at a time.

Each variant is a trainer run (`python -m trainer distill`), so an interrupted ablation
resumes where it stopped. The table comes from each run's own log: LFW and the
degraded protocol (Low-High, Low-Low) after the last epoch, fp32 in torch.
LFW is research data (non-commercial use only).

    python bench/distill_ablation.py                   # train what is missing, then the table
    python bench/distill_ablation.py --table-only
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from trainer.distill import runs_dir  # noqa: E402

# One knob each against the baseline (Eq. 5, robust, ReLU, no ArcFace term).
VARIANTS = {
    "base": [],
    "eq4": ["--distill-loss", "eq4"],
    "arcface": ["--arcface-weight", "1"],
    "clean": ["--clean"],
    "prelu": ["--act", "prelu"],
    "leaky": ["--act", "leaky"],
    # consistent teaching: compare with "clean", whose inputs also skip the poor-image chain
    "online": ["--clean", "--online-teacher"],
    "online-mixup": ["--clean", "--online-teacher", "--mixup", "0.5"],
}


def run_name(prefix: str, variant: str) -> str:
    return f"{prefix}-{variant}"


def train(prefix: str, common: list[str], variants: list[str], threads: int) -> None:
    for variant in variants:
        command = [sys.executable, "-m", "trainer", "distill",
                   "--name", run_name(prefix, variant), "--threads", str(threads),
                   *common, *VARIANTS[variant]]
        print("$", " ".join(command[1:]), flush=True)
        subprocess.run(command, cwd=ROOT, check=True)


def last_epoch(name: str) -> dict | None:
    log = runs_dir() / name / "log.jsonl"
    if not log.exists():
        return None
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return lines[-1] if lines else None


def table(prefix: str, variants: list[str]) -> str:
    rows = ["| variant | epochs | train cos | LFW | TAR@1e-3 | Low-High | Low-Low | minutes |",
            "|---|---|---|---|---|---|---|---|"]
    for variant in variants:
        entry = last_epoch(run_name(prefix, variant))
        if entry is None or "lfw_low" not in entry:
            rows.append(f"| {variant} | (not finished) |||||||")
            continue
        low = entry["lfw_low"]
        rows.append(
            f"| {variant} | {entry['epoch']} | {entry['train_cosine']:.4f} "
            f"| {100 * entry['lfw']['accuracy']:.2f} | {entry['lfw']['tar_at_far_0.001']:.3f} "
            f"| {100 * low['low_high']['accuracy']:.2f} ({low['low_high']['tar_at_far_0.001']:.3f}) "
            f"| {100 * low['low_low']['accuracy']:.2f} ({low['low_low']['tar_at_far_0.001']:.3f}) "
            f"| {entry['minutes']:.1f} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prefix", default="abl-mobiface-w05-64")
    parser.add_argument("--arch", default="mobiface")
    parser.add_argument("--width", default="0.5")
    parser.add_argument("--input-size", default="64")
    parser.add_argument("--epochs", default="3")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--table-only", action="store_true")
    args = parser.parse_args()
    if not args.table_only:
        # the baseline's knobs are spelled out (a variant's option comes later and wins),
        # so the runs stay comparable when the trainer's defaults change
        common = ["--arch", args.arch, "--width", args.width,
                  "--input-size", args.input_size, "--epochs", args.epochs,
                  "--distill-loss", "eq5", "--act", "relu", "--arcface-weight", "0"]
        train(args.prefix, common, args.variants, args.threads)
    print(table(args.prefix, args.variants))


if __name__ == "__main__":
    main()
