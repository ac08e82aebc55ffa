"""Where the runs of an experiment run: in this process one after another (the default), as
submitit jobs (``--launcher slurm``, or ``submitit-local`` on this machine), or anywhere
else from the command lines of ``--dry-run``."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mts_lightning.experiment.runner import run_one
from mts_lightning.experiment.spec import ExperimentError, ExperimentSpec, RunKey, load_spec


def run_command(
    spec: ExperimentSpec, key: RunKey, output_dir: Path, extra: Sequence[str] = ()
) -> str:
    """The ``mts-lightning`` command line of one run, for any scheduler."""
    args = [
        "mts-lightning",
        "experiment",
        "run",
        f"--config={spec.path}",
        f"--output_dir={output_dir}",
        f"--variant={key.variant}",
        f"--fold={key.fold}",
        f"--seed={key.seed}",
    ]
    if key.corpus is not None:
        args.append(f"--train_corpus={key.corpus}")
    if extra:
        args += ["--", *extra]
    return shlex.join(args)


def run_job(spec_path: str, output_dir: str, key: RunKey, extra: Sequence[str]) -> dict[str, Any]:
    """One run as a submitit job (a picklable entry point): the same as ``experiment run``."""
    return run_one(load_spec(spec_path), key, output_dir, extra)


def submit_runs(
    spec: ExperimentSpec,
    keys: Sequence[RunKey],
    output_dir: Path,
    extra: Sequence[str],
    cluster: str,
) -> list[str]:
    """Submit every run as a submitit job on ``cluster`` (``slurm`` or ``local``) with the
    experiment's ``slurm`` parameters (submitit's names: ``timeout_min``, ``gpus_per_node``,
    ``tasks_per_node``, ``slurm_partition``, ...), wait for all, and return the messages of
    the jobs that failed (their runs stay unrecorded: rerun the command to redo them)."""
    import submitit

    try:
        executor = submitit.AutoExecutor(folder=output_dir / "submitit" / "%j", cluster=cluster)
    except Exception as err:  # submitit raises plain exceptions when SLURM is not reachable
        raise ExperimentError(f"--launcher: submitit cannot use {cluster!r} here: {err}") from err
    try:
        executor.update_parameters(name=spec.name, **spec.slurm)
    except (ValueError, TypeError) as err:
        raise ExperimentError(f"{spec.path}: slurm: {err}") from err
    jobs = [
        (key, executor.submit(run_job, str(spec.path), str(output_dir), key, list(extra)))
        for key in keys
    ]
    for key, job in jobs:
        print(f"submitted {key.label}: job {job.job_id}", flush=True)
    failures = []
    for key, job in jobs:
        try:
            job.result()
        except Exception as err:
            failures.append(f"{key.label} (job {job.job_id}): {err}")
    return failures
