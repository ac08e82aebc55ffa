"""Can two runs be compared? The spread of test UA over seeds and thread counts.

    .venv/bin/python benchmarks/stability.py --output_dir experiments/stability_synthetic
    .venv/bin/python benchmarks/stability.py --output_dir DIR --threads 1 2 \\
        --config configs/experiments/stability_synthetic.yaml [--variants mts mts_ema] \\
        [-- FIT OVERRIDES]

Runs the experiment file (default ``configs/experiments/stability_synthetic.yaml``: the MTS
recipe and its equal-cost conv twin, with and without a moving average of the weights, one
fold, 3 seeds) once per thread count, each with ``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` set
and its runs in ``DIR/threads_<N>`` (an ordinary experiment folder: interrupted, it goes on
where it stopped). Then it prints, per variant, the test UA of every run at the file's
reference condition and its standard deviation (sample, n - 1) over the seeds of each thread
count and over every run, and the largest change of one seed's UA between thread counts;
``DIR/stability.csv`` holds the same. Arguments after ``--`` go to every run's ``fit``.

The issue's target: a standard deviation of at most 0.03 per variant.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
from pathlib import Path

from mts_lightning.experiment import load_spec
from mts_lightning.experiment.runner import read_results

DEFAULT_CONFIG = (
    Path(__file__).resolve().parents[1] / "configs/experiments/stability_synthetic.yaml"
)


def run_experiment(
    config: Path, output_dir: Path, threads: int, variants: list[str] | None, extra: list[str]
) -> Path:
    """Run every unrecorded run of ``config`` (of ``variants`` only, when given) with
    ``threads`` threads; its results.csv."""
    folder = output_dir / f"threads_{threads}"
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    command = [
        sys.executable,
        "-m",
        "mts_lightning",
        "experiment",
        f"--config={config}",
        f"--output_dir={folder}",
    ]
    if variants:
        command += ["--variants", *variants]
    if extra:
        command += ["--", *extra]
    print(f"threads {threads}: {' '.join(command)}", flush=True)
    code = subprocess.run(command, env=env).returncode
    if code != 0:
        sys.exit(f"stability.py: the experiment with {threads} thread(s) failed (exit {code})")
    return folder / "results.csv"


def sample_std(values: list[float]) -> float:
    """Standard deviation with n - 1 (0 for a single value)."""
    return statistics.stdev(values) if len(values) > 1 else 0.0


def spread(results: dict[int, list[dict]], reference: str, variants: list[str]) -> list[dict]:
    """Per variant: UA of every run at ``reference``, stds per thread count and overall, and the
    largest change of one (fold, seed) between thread counts."""
    rows = []
    for variant in variants:
        by_threads = {
            threads: {
                (r["fold"], r["seed"]): r["UA"]
                for r in rows_
                if r["variant"] == variant and r["condition"] == reference
            }
            for threads, rows_ in results.items()
        }
        every = [ua for runs in by_threads.values() for ua in runs.values()]
        keys = set.intersection(*(set(runs) for runs in by_threads.values()))
        thread_change = max(
            (
                max(runs[k] for runs in by_threads.values())
                - min(runs[k] for runs in by_threads.values())
                for k in keys
            ),
            default=0.0,
        )
        row = {"variant": variant, "runs": len(every), "mean_UA": statistics.fmean(every)}
        for threads, runs in by_threads.items():
            values = [runs[k] for k in sorted(runs)]
            row[f"UA_threads_{threads}"] = " ".join(f"{v:.3f}" for v in values)
            row[f"std_threads_{threads}"] = sample_std(values)
        row["std_all"] = sample_std(every)
        row["max_thread_change"] = thread_change
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        extra, argv = argv[argv.index("--") + 1 :], argv[: argv.index("--")]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="experiment file")
    parser.add_argument("--output_dir", type=Path, required=True)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--variants", nargs="+", help="only these variants of the file")
    args = parser.parse_args(argv)
    if any(t < 1 for t in args.threads) or len(set(args.threads)) != len(args.threads):
        parser.error(f"--threads: distinct thread counts >= 1, got {args.threads}")
    spec = load_spec(args.config)
    results = {
        threads: read_results(
            run_experiment(args.config, args.output_dir, threads, args.variants, extra)
        )
        for threads in args.threads
    }
    variants = [v for v in spec.variants if not args.variants or v in args.variants]
    rows = spread(results, spec.reference_condition, variants)
    print(f"\ntest UA at {spec.reference_condition} (std: sample standard deviation)")
    for row in rows:
        per_threads = "; ".join(
            f"{t} thread(s): {row[f'UA_threads_{t}']} (std {row[f'std_threads_{t}']:.3f})"
            for t in args.threads
        )
        print(
            f"{row['variant']:>16}: mean {row['mean_UA']:.3f}, std over all {row['runs']} runs "
            f"{row['std_all']:.3f}, largest change between thread counts "
            f"{row['max_thread_change']:.3f}; {per_threads}"
        )
    path = args.output_dir / "stability.csv"
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"written: {path}")


if __name__ == "__main__":
    main()
