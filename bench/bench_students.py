"""Every embedder pack side by side: size, speed and accuracy, and the speed/accuracy plot.

    python bench/bench_students.py [--runs 200] [--plot reports/speed-accuracy.png]
                                   [--also DIR ...]   # packs not shipped (trials)

Speeds are measured here, in one run, for every variant of every pack (medians on
real aligned faces, batch 1 on 1 thread and batch 8 on 2 threads; in five rounds that
each time every pack once, so a slower minute of the machine hits all packs alike). Accuracies are
read from each pack's manifest, where `python -m trainer evaluate --update-manifest`
stored them (LFW: research data, non-commercial use).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_embedder import sample_crops, time_per_face  # noqa: E402

from faceapp.core.embed import Embedder  # noqa: E402
from faceapp.core.models import ModelPack, available_packs  # noqa: E402


def pct(value) -> str:
    return f"{100 * value:.2f}" if value is not None else "-"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--plot", default="reports/speed-accuracy.png")
    parser.add_argument("--also", nargs="*", default=[],
                        help="folders of more embedder packs (e.g. trial students)")
    args = parser.parse_args(argv)

    packs = available_packs("embedder", include_unlisted=True)
    for folder in args.also:
        packs += [ModelPack.load(child) for child in sorted(Path(folder).iterdir())
                  if (child / "manifest.json").exists()]

    rows = []
    evaluations = {}
    crops_by_template = {}
    timed = []  # (batch-1 embedder, batch-8 embedder, crops) per row
    for pack in packs:
        arch = pack.manifest.get("architecture", {})
        evaluation = pack.manifest.get("evaluation", {})
        evaluations[pack.name] = evaluation
        for variant in pack.manifest["files"]:
            if not pack.has_file(variant):
                continue
            one = Embedder(pack, variant=variant, threads=1, flip=False)
            template = one.template.name
            if template not in crops_by_template:
                crops_by_template[template] = sample_crops(template)
            timed.append((one, Embedder(pack, variant=variant, threads=2, flip=False),
                          crops_by_template[template]))
            flip = bool(pack.manifest.get("flip_fusion", False))  # as the app runs it
            template_flip = flip or bool(pack.manifest.get("template_flip_fusion", False))
            lfw = evaluation.get("lfw", {}).get(variant, {})
            lfw_shipped = evaluation.get("lfw", {}).get(variant + ("+flip" if flip else ""), {})
            low = evaluation.get("lfw_low", {}).get(variant, {})
            rows.append({
                "pack": pack.name, "variant": variant,
                "params": arch.get("parameters"), "madds": arch.get("multiply_adds"),
                "mb": pack.manifest["files"][variant]["bytes"] / 1e6,
                "ms1": None, "ms8": None, "lfw": lfw.get("accuracy_mean"), "flip": flip,
                "template_flip": template_flip,
                "lfw_shipped": lfw_shipped.get("accuracy_mean"),
                "hh": low.get("high_high", {}).get("accuracy_mean"),
                "lh": low.get("low_high", {}).get("accuracy_mean"),
                "ll": low.get("low_low", {}).get("accuracy_mean"),
                "lh_tar": low.get("low_high", {}).get("tar_at_far_0.001"),
                "ll_tar": low.get("low_low", {}).get("tar_at_far_0.001"),
            })

    # Timed in rounds, every pack once per round, and the median over rounds kept:
    # a machine that slows down for a minute slows every pack alike, not the last ones.
    rounds = 5
    samples = [([], []) for _ in timed]
    for round_no in range(rounds):
        for (one, eight, crops), (ms1, ms8) in zip(timed, samples):
            ms1.append(time_per_face(one, crops, 1, max(10, args.runs // rounds))[0])
            ms8.append(time_per_face(eight, crops, 8, max(5, args.runs // 4 // rounds))[0])
        print(f"timing round {round_no + 1} of {rounds}", file=sys.stderr)
    for row, (ms1, ms8) in zip(rows, samples):
        row["ms1"], row["ms8"] = statistics.median(ms1), statistics.median(ms8)

    teacher = next((r for r in rows if r["pack"] == "dlib-resnet-v1" and r["variant"] == "int8"),
                   None)
    print("ms: one pass per face (median). As shipped: times 2 for a pack that fuses each "
          "searched face with its mirror (flip: yes), or each enrolled sample (templates); "
          "speed-ups against the teacher's int8 pack as shipped.")
    print("| pack | variant | params (M) | MAdds (M) | file (MB) | ms b1 1 thr | ms b8 2 thr "
          "| flip | speed-up searching b1 / b8 | enrolling b1 / b8 | LFW % | LFW % as shipped "
          "| High-High % | Low-High % (TAR@1e-3) | Low-Low % (TAR@1e-3) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        params = f"{r['params'] / 1e6:.2f}" if r["params"] else "-"
        madds = f"{r['madds'] / 1e6:.0f}" if r["madds"] else "-"
        lh = f"{pct(r['lh'])} ({r['lh_tar']:.3f})" if r["lh"] is not None else "-"
        ll = f"{pct(r['ll'])} ({r['ll_tar']:.3f})" if r["ll"] is not None else "-"
        speedup = enrolling = "-"
        if teacher is not None:
            def ratio(key):
                factor = (2 if teacher[key] else 1) / (2 if r[key] else 1)
                return (f"{factor * teacher['ms1'] / r['ms1']:.2f}x / "
                        f"{factor * teacher['ms8'] / r['ms8']:.2f}x")
            speedup, enrolling = ratio("flip"), ratio("template_flip")
        flip = "yes" if r["flip"] else "templates" if r["template_flip"] else "no"
        print(f"| {r['pack']} | {r['variant']} | {params} | {madds} | {r['mb']:.2f} "
              f"| {r['ms1']:.2f} | {r['ms8']:.2f} | {flip} | {speedup} | {enrolling} "
              f"| {pct(r['lfw'])} | {pct(r['lfw_shipped'])} | {pct(r['hh'])} | {lh} | {ll} |")

    plotted = [r for r in rows if r["lfw"] is not None and r["variant"] == "int8"]
    if plotted and args.plot:
        plot(plotted, teacher, evaluations, args.plot)
    return 0


def plot(rows: list[dict], teacher: dict | None, evaluations: dict, path: str) -> None:
    """Each int8 pack at one pass per face and with flip fusion (two passes), joined;
    the teacher as shipped, and the issue's bars: 2x and 4x its speed, 98.7% and 97%."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5.5))
    for r in rows:
        with_flip = evaluations[r["pack"]].get("lfw", {}).get("int8+flip", {})
        xs, ys = [r["ms1"]], [100 * r["lfw"]]
        if with_flip.get("accuracy_mean") is not None:
            xs.append(2 * r["ms1"])
            ys.append(100 * with_flip["accuracy_mean"])
        line, = ax.plot(xs, ys, marker="o", linewidth=1)
        shipped = 1 if r["flip"] and len(xs) == 2 else 0
        ax.scatter([xs[shipped]], [ys[shipped]], s=120, facecolors="none",
                   edgecolors=line.get_color())
        ax.annotate(r["pack"], (xs[0], ys[0]), fontsize=7, xytext=(4, -10),
                    textcoords="offset points")
    if teacher is not None:
        as_shipped = teacher["ms1"] * (2 if teacher["flip"] else 1)
        for factor in (2, 4):
            ax.axvline(as_shipped / factor, color="grey", linestyle=":", linewidth=1)
            ax.annotate(f"{factor}x faster than the teacher as shipped",
                        (as_shipped / factor, ax.get_ylim()[0]), rotation=90, fontsize=7,
                        xytext=(2, 4), textcoords="offset points", color="grey")
    for bar in (98.7, 97.0):
        ax.axhline(bar, color="grey", linestyle="--", linewidth=0.8)
    ax.set_xlabel("ms per face as run: batch 1, 1 thread (this machine); "
                  "right end of a line: with flip fusion")
    ax.set_ylabel("LFW accuracy %, int8 (research data)")
    ax.set_title("Embedders: speed against accuracy (circled: as the pack ships)")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"plot: {path}", file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
