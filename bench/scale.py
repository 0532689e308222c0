"""Scaling of processors on the PostgreSQL queue, beside the embedded single node, in one run.

What is timed is processing alone: each round fills a queue with ``--count`` instances while its
nodes are paused (SIGSTOP of the serve process), then lets them drain it and forward every
result to a folder. No DICOM receive and no PACS share the cores with the processors, so the
figures say how processing scales with processors, not how the receive path or the PACS does.
Payloads are in a shared folder on local disk; each processor (``dmask serve --role process``)
and the single node (``--role all`` on the SQLite spool) run ``--workers`` worker(s).

Two workloads: 1 MP photos that are masked and 40 KB tags-only secondary captures. Printed per
configuration, as medians over ``--rounds`` rounds (configurations take turns within a round,
after one unrecorded warm-up round):

* instances per second, and the scaling efficiency rate(n) / (n * rate(1 processor));
* CPU per instance of the processing nodes (serve process and workers), and beside the single
  node's how much more a processor on PostgreSQL spends;
* CPU per instance of the PostgreSQL server, its statements and WAL bytes per instance.

Usage, from the repository root: ``.venv/bin/python -m bench.scale [--rounds 3]
[--mask-count 12] [--tags-count 100] [--processors 1 2] [--record]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

from pydicom.uid import SecondaryCaptureImageStorage

from bench import nodes as cluster
from bench.results import run_benchmark
from gateway.config import load_config
from gateway.store.backends import open_spool
from gateway.store.queue import Spool
from tests.support.instances import photo_instance, write
from tests.support.peers import DmaskServer
from tests.support.photos import photo, resized
from tests.support.postgres import PostgresServer

UNFINISHED = {"received", "processing", "retry"}


@dataclass(frozen=True)
class Workload:
    label: str
    count: int
    make: Callable[[Path, int], list[Path]]


@dataclass
class Figures:
    """What the rounds of one configuration measured, per round."""

    rates: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)
    serve_cpu_ms: list[float] = field(default_factory=list)
    server_cpu_ms: list[float] = field(default_factory=list)
    statements: list[float] = field(default_factory=list)
    wal_kib: list[float] = field(default_factory=list)


@dataclass
class Configuration:
    """Nodes that drain one queue; ``filler`` admits into that queue from this process."""

    label: str
    nodes: list[DmaskServer]
    filler: Spool
    output: Path
    dsn: str | None = None
    #: The SQLite database of an embedded spool, which the paused node must not hold locked.
    database: Path | None = None
    figures: dict[str, Figures] = field(default_factory=dict)


def _photos(pixels: int, name: str, **options: str) -> Callable[[Path, int], list[Path]]:
    image = resized(photo(name), pixels)

    def make(folder: Path, count: int) -> list[Path]:
        folder.mkdir(parents=True)
        return [write(photo_instance(image, **options), folder / f"{n:05d}.dcm")
                for n in range(count)]

    return make


def _pause(configuration: Configuration, paused: bool) -> None:
    for node in configuration.nodes:
        assert node.process is not None
        os.kill(node.process.pid, signal.SIGSTOP if paused else signal.SIGCONT)


def _unlocked(configuration: Configuration) -> None:
    """Pause the nodes where they hold no write lock on an embedded spool's database (one
    paused in housekeeping's transaction would block the filling for good): the queue is empty
    meanwhile, so letting them run a moment more costs nothing."""
    while configuration.database is not None:
        try:
            with closing(sqlite3.connect(configuration.database, timeout=0.5)) as db:
                db.execute("BEGIN IMMEDIATE")
                db.execute("ROLLBACK")
            return
        except sqlite3.OperationalError:
            _pause(configuration, False)
            time.sleep(0.1)
            _pause(configuration, True)


def _forwarded(folder: Path) -> int:
    """Results in a folder destination (its temporary files start with a dot)."""
    try:
        return sum(1 for name in os.listdir(folder) if name.endswith(".dcm") and name[0] != ".")
    except FileNotFoundError:
        return 0


def _unfinished(spool: Spool) -> int:
    return sum(n for (state, _), n in spool.counts().items() if state in UNFINISHED)


def _round(configuration: Configuration, files: list[Path], server: PostgresServer | None,
           timeout: float = 900) -> tuple[float, float, float, float, int, int]:
    """Fill the paused nodes' queue with ``files``, let them drain it; return the rate, the
    CPU seconds of the nodes, of their serve processes alone and of the server, and the
    statements and WAL bytes spent meanwhile.

    The end is when the last result is in the destination folder (watched without asking the
    queue, whose statements are counted), then the queue is waited for to record it.
    """
    spool = configuration.filler
    expected = _forwarded(configuration.output) + len(files)
    _unlocked(configuration)
    for path in files:
        received = spool.incoming_dir() / path.name
        shutil.copyfile(path, received)
        spool.admit(received, calling_ae="BENCH", called_ae="DMASK")
    if configuration.dsn is not None:
        cluster.reset_statistics(configuration.dsn)
        calls_before, wal_before = cluster.statistics(configuration.dsn)
    postmaster = cluster.postmaster_pid(server) if server is not None else None
    server_before = cluster.cpu_seconds(postmaster) if postmaster else 0.0
    cpu_before = sum(cluster.node_cpu_seconds(node) for node in configuration.nodes)
    serve_before = sum(cluster.serve_cpu_seconds(node) for node in configuration.nodes)
    started = time.perf_counter()
    _pause(configuration, False)
    deadline = started + timeout
    while _forwarded(configuration.output) < expected:
        if time.perf_counter() > deadline:
            raise RuntimeError(f"{configuration.label}: the queue was not drained in {timeout} s;"
                               f" its jobs: {spool.counts()}")
        time.sleep(0.02)
    elapsed = time.perf_counter() - started
    while _unfinished(spool):
        time.sleep(0.02)
    cpu = sum(cluster.node_cpu_seconds(node) for node in configuration.nodes) - cpu_before
    serve = sum(cluster.serve_cpu_seconds(node) for node in configuration.nodes) - serve_before
    _pause(configuration, True)
    server_cpu = cluster.cpu_seconds(postmaster) - server_before if postmaster else 0.0
    calls = wal = 0
    if configuration.dsn is not None:
        calls, wal = cluster.statistics(configuration.dsn)
        calls, wal = calls - calls_before, wal - wal_before
    return len(files) / elapsed, cpu, serve, server_cpu, calls, wal


def _configurations(folder: Path, server: PostgresServer, processors: list[int],
                    workers: int) -> tuple[list[Configuration], list[DmaskServer]]:
    """The single node on SQLite, and one queue per processor count with its processors."""
    single = DmaskServer(folder / "single", cluster.node_settings(
        folder / "single", folder / "single-out", workers=workers))
    every = [single]
    configurations = []
    for count in processors:
        queue = folder / f"queue{count}"
        dsn_file = cluster.new_queue(server, queue)
        nodes = [DmaskServer(queue / f"processor{n}", cluster.node_settings(
            queue / f"processor{n}", queue / "out", workers=workers, dsn_file=dsn_file,
            shared=queue / "shared", node=f"processor{n}"), role="process")
            for n in range(count)]
        settings = load_config(nodes[0].config).spool
        filler = open_spool(settings.model_copy(update={"path": queue / "filler"}), node="filler")
        plural = "s" if count > 1 else ""
        configurations.append(Configuration(f"PostgreSQL, {count} processor{plural}", nodes,
                                            filler, queue / "out", dsn_file.read_text()))
        every.extend(nodes)
    cluster.start_nodes(every)
    single_spool = open_spool(load_config(single.config).spool)
    configurations.insert(0, Configuration("SQLite single node (--role all)", [single],
                                           single_spool, folder / "single-out",
                                           database=folder / "single" / "spool" / "state.sqlite"))
    for configuration in configurations:
        _pause(configuration, True)
    return configurations, every


def _report(workload: Workload, configurations: list[Configuration], rounds: int) -> None:
    print(f"{workload.label}: {workload.count} instances per round, median of {rounds} rounds;"
          " CPU per instance: nodes (serve process + workers) / serve process alone")
    single = configurations[0].figures[workload.label]
    single_cpu = statistics.median(single.cpu_ms)
    single_serve = statistics.median(single.serve_cpu_ms)
    one_processor: float | None = None
    for configuration in configurations:
        figures = configuration.figures[workload.label]
        rate = statistics.median(figures.rates)
        cpu = statistics.median(figures.cpu_ms)
        serve = statistics.median(figures.serve_cpu_ms)
        line = f"  {configuration.label:32s} {rate:6.1f}/s  CPU {cpu:6.1f} / {serve:5.2f} ms"
        if configuration.dsn is not None:
            processors = len(configuration.nodes)
            if processors == 1:
                one_processor = rate
            if one_processor is not None:
                line += f"  scaling {rate / (processors * one_processor):4.2f}"
            line += (f"\n  {'':32s} beside SQLite {cpu - single_cpu:+6.1f} / {serve - single_serve:+5.2f} ms;"
                     f" PostgreSQL server {statistics.median(figures.server_cpu_ms):4.1f} ms CPU,"
                     f" {statistics.median(figures.statements):4.1f} statements,"
                     f" {statistics.median(figures.wal_kib):4.1f} KiB WAL")
        print(line)


def measure(args: argparse.Namespace) -> None:
    print(f"cores: {len(os.sched_getaffinity(0))}; {args.workers} worker(s) per node; draining a"
          " pre-filled queue, forwarding to a folder; load average"
          f" {os.getloadavg()[0]:.1f} at the start")
    workloads = [
        Workload("mask 1 MP", args.mask_count,
                 _photos(1_000_000, "grace_hopper", modality="XC")),
        Workload("tags-only 40 KB", args.tags_count,
                 _photos(13_000, "camera", sop_class_uid=SecondaryCaptureImageStorage,
                         modality="OT")),
    ]
    server = PostgresServer()
    server.start()
    started: list[DmaskServer] = []
    try:
        with tempfile.TemporaryDirectory(prefix="dmask-bench-scale-") as scratch:
            folder = Path(scratch)
            configurations, started = _configurations(folder, server, args.processors,
                                                      args.workers)
            for number in range(args.rounds + 1):  # round 0 warms the workers up
                for workload in workloads:
                    count = max(2, workload.count // 10) if number == 0 else workload.count
                    for configuration in configurations:
                        files = workload.make(folder / "in", count)
                        rate, cpu, serve, server_cpu, calls, wal = _round(
                            configuration, files, server if configuration.dsn else None)
                        shutil.rmtree(files[0].parent)
                        if number == 0:
                            continue
                        figures = configuration.figures.setdefault(workload.label, Figures())
                        figures.rates.append(rate)
                        figures.cpu_ms.append(1000 * cpu / count)
                        figures.serve_cpu_ms.append(1000 * serve / count)
                        figures.server_cpu_ms.append(1000 * server_cpu / count)
                        figures.statements.append(calls / count)
                        figures.wal_kib.append(wal / count / 1024)
            print(f"load average {os.getloadavg()[0]:.1f} at the end")
            for workload in workloads:
                _report(workload, configurations, args.rounds)
            for configuration in configurations:
                configuration.filler.close()
    finally:
        for node in started:
            if node.process is not None:
                os.kill(node.process.pid, signal.SIGCONT)
            node.stop()
        server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cores = len(os.sched_getaffinity(0))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mask-count", type=int, default=12)
    parser.add_argument("--tags-count", type=int, default=100)
    parser.add_argument("--workers", type=int, default=1, help="worker processes per node")
    parser.add_argument("--processors", type=int, nargs="+",
                        default=[n for n in (1, 2, 4) if n == 1 or n <= cores])
    run_benchmark(parser, measure)


if __name__ == "__main__":
    main()
