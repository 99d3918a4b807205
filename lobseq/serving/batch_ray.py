"""Batch scoring on Ray Data: many files or instruments, an actor pool, one model load per actor.

    with open_engine(EngineConfig(name="ray")) as engine:
        table, stats = predict_files_ray("models:/lob@champion", ["data/raw/universe"], "lobster",
                                         "data/predictions/universe.parquet", engine)

The driver plans the reads (`lobseq.data.sources.jobs`: one job per LOBSTER
file pair or per file, the readers' up-front name checks) and resolves an
alias once, so every actor loads the same version. Ray Data then runs
`map_batches` over the jobs with an actor pool (`concurrency` actors of
fractional CPUs that leave the cluster headroom, `lobseq.engine.cpu_share`):
each actor loads the model once, in its constructor, through
`lobseq.serving.loader.load_model` (the one inference path), and for each job
reads its files with ingest's readers and row checks and scores every
instrument-day with `lobseq.serving.predict.score_segment`, as the local
`predict` does. Each job's predictions come back pickled in one row (exact
dtypes, empty days included), or its `LobseqError` (a bad file; the driver
raises the first in reading order, the local engine's one-line error); the
driver puts them in the readers' order (bar
symbols sorted across files) and writes the table with the local writer,
atomically, so the file equals the local engine's.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from lobseq.errors import LobseqError


@dataclass
class Scored:
    """One instrument-day's predictions (what `merge_symbols` orders for bars)."""

    instrument: str
    files: tuple[str, ...]
    frame: pd.DataFrame


class Scorer:
    """A Ray Data actor: the model, loaded once; `__call__` scores a batch of read jobs."""

    def __init__(self, model_uri: str, jobs: list, format: str, cwd: str | None = None) -> None:
        from lobseq.engine.ray_engine import in_driver_dir
        from lobseq.serving.loader import load_model

        in_driver_dir(cwd)  # relative input paths, and errors that name them, as the driver's
        self.model = load_model(model_uri)  # the only load this actor makes
        self.loads = 1
        self.jobs, self.format = jobs, format
        self.actor = f"{os.uname().nodename}:{os.getpid()}"

    def __call__(self, batch: dict) -> dict:
        from lobseq.serving.predict import score_segment

        out = {"job": [], "scored": [], "error": [], "actor": [], "loads": []}
        for i in batch["job"]:
            scored, error = [], None
            try:
                scored = [Scored(seg.instrument, seg.files, score_segment(self.model, seg, self.format))
                          for seg in self.jobs[int(i)].read()]
            except LobseqError as e:  # a bad file: the driver raises it in file order, unwrapped
                error = e
            out["job"].append(int(i))
            out["scored"].append(pickle.dumps(scored, protocol=pickle.HIGHEST_PROTOCOL))
            out["error"].append(pickle.dumps(error, protocol=pickle.HIGHEST_PROTOCOL))
            out["actor"].append(self.actor)
            out["loads"].append(self.loads)
        return out


def predict_files_ray(model_uri: str, inputs: Sequence[str | Path], format: str, out: str | Path,
                      engine, symbol_column: str = "symbol") -> tuple[pd.DataFrame, dict]:
    """Score `inputs` on `engine` (an open Ray engine) and write `out` as `predict_files` does.

    Returns (table, stats): stats has `jobs`, `actors`, `cpus_per_actor` and
    `batches_by_actor` ({actor: [jobs scored, model loads]}).
    """
    from lobseq.data.sources.jobs import plan_reads
    from lobseq.engine import cpu_share
    from lobseq.serving.loader import pin_model_uri
    from lobseq.serving.predict import write_table

    jobs = plan_reads([str(p) for p in inputs], format, symbol_column=symbol_column)
    if not jobs:
        raise LobseqError("no input files found", file=", ".join(map(str, inputs)),
                          fix="pass the files or a folder that holds them")
    fetch, _name, _version = pin_model_uri(model_uri)
    nodes = engine.node_cpus()
    actors = max(1, min(len(jobs), int(sum(nodes))))
    share = cpu_share(nodes, actors)
    rows = _score(jobs, fetch, format, actors, share, engine.task_runtime_env)
    for i in range(len(jobs)):  # the first bad file in reading order, as the local engine says it
        error = pickle.loads(rows[i]["error"])
        if error is not None:
            raise error
    per_job = [pickle.loads(rows[i]["scored"]) for i in range(len(jobs))]
    segments = per_job_order(per_job, format)
    if not segments:
        raise LobseqError("no input files found", file=", ".join(map(str, inputs)),
                          fix="pass the files or a folder that holds them")
    table = pd.concat([s.frame for s in segments], ignore_index=True)
    write_table(table, out)
    by_actor: dict[str, list[int]] = {}
    for row in rows.values():
        seen = by_actor.setdefault(row["actor"], [0, 0])
        seen[0], seen[1] = seen[0] + 1, max(seen[1], int(row["loads"]))
    return table, {"jobs": len(jobs), "actors": actors, "cpus_per_actor": share,
                   "batches_by_actor": by_actor}


def per_job_order(per_job: list[list[Scored]], format: str) -> list[Scored]:
    """The readers' order: jobs as planned; bar symbols sorted across files (a symbol in two
    files is the reader's error)."""
    if str(format).lower() == "bars":
        from lobseq.data.sources.bars import merge_symbols

        return merge_symbols(per_job)
    return [s for scored in per_job for s in scored]


def _score(jobs: list, model_uri: str, format: str, actors: int, share: float,
           runtime_env: dict | None) -> dict[int, dict]:
    """Ray Data: one row per job in, one row per job out ({job: row}); a job's LobseqError
    is raised as the local engine raises it."""
    import logging
    import warnings

    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.execution_options.preserve_order = True
    items = ray.data.from_items([{"job": i} for i in range(len(jobs))], override_num_blocks=len(jobs))
    with warnings.catch_warnings():  # max_restarts has no named parameter yet (Ray 2.60)
        warnings.simplefilter("ignore", DeprecationWarning)
        scored = items.map_batches(Scorer, batch_size=1, batch_format="numpy",
                                   compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=share,
                                   fn_constructor_kwargs={"model_uri": model_uri, "jobs": jobs,
                                                          "format": format, "cwd": os.getcwd()},
                                   runtime_env=runtime_env,
                                   max_restarts=0)  # a failed actor fails the run, once
    quiet = logging.getLogger("ray.data")
    level, quiet.level = quiet.level, logging.ERROR  # its plan and progress lines, per run
    try:
        return {int(row["job"]): row for row in scored.iter_rows()}
    finally:
        quiet.setLevel(level)
