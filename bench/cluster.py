"""Capacity of the scale-out queue: what one instance costs each role and PostgreSQL, and where
one PostgreSQL server saturates.

Two parts, on a PostgreSQL 15 server started for the run (Debian's binaries, as the tests do)
and a shared payload folder:

* the cost per instance: a receiver node and a processor node (``dmask serve --role ...``)
  take ``--count`` 40 KB tags-only instances from storescu and forward them to a folder; printed
  are the CPU seconds each node's process group used per instance, the statements PostgreSQL
  ran per instance (pg_stat_statements) and the WAL bytes it wrote per instance;
* saturation: ``--threads`` admitting threads, then as many claiming threads (each with its
  own connection, as separate nodes have), drive the queue directly for ``--seconds`` each,
  with no DICOM and no pipeline: the most instances per second one server takes and hands out.

Usage, from the repository root: ``.venv/bin/python -m bench.cluster [--count 200]
[--threads 1 4 16] [--seconds 5] [--record]``
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

from pydicom.uid import SecondaryCaptureImageStorage

from bench import nodes
from bench.results import run_benchmark
from gateway.config import FolderPayloads
from gateway.store.payload_store import FolderStore
from gateway.store.postgres_spool import PostgresSpool, upgrade_schema
from tests.support.instances import photo_instance, write
from tests.support.peers import DmaskServer, acknowledged, storescu, wait_until
from tests.support.photos import photo, resized
from tests.support.postgres import PostgresServer

SMALL_PIXELS = 13_000


def per_instance(server: PostgresServer, folder: Path, count: int) -> None:
    dsn_file = nodes.new_queue(server, folder)
    dsn = dsn_file.read_text()
    image = resized(photo("camera"), SMALL_PIXELS)
    (folder / "in").mkdir()
    files = [write(photo_instance(image, sop_class_uid=SecondaryCaptureImageStorage),
                   folder / "in" / f"{n:04d}.dcm") for n in range(count)]
    started = {role: DmaskServer(folder / role, nodes.node_settings(
        folder / role, folder / "out", dsn_file=dsn_file, shared=folder / "shared", node=role),
        role=role) for role in ("receive", "process")}
    nodes.start_nodes(list(started.values()))
    try:
        nodes.reset_statistics(dsn)
        calls_before, wal_before = nodes.statistics(dsn)
        cpu_before = {role: nodes.node_cpu_seconds(node) for role, node in started.items()}
        began = time.perf_counter()
        sent = acknowledged(storescu(started["receive"].port, files))
        assert len(sent) == count, "storescu did not get Success for every instance"
        wait_until(lambda: len(list((folder / "out").rglob("*.dcm"))) >= count, 600,
                   "every instance forwarded")
        elapsed = time.perf_counter() - began
        cpu = {role: nodes.node_cpu_seconds(node) - cpu_before[role]
               for role, node in started.items()}
        calls, wal = nodes.statistics(dsn)
    finally:
        for node in started.values():
            node.stop()
    print(f"per instance ({count} x 40 KB tags-only, 1 receiver + 1 processor with 1 worker,"
          f" {count / elapsed:.1f}/s end to end):")
    print(f"  receiver CPU   {1000 * cpu['receive'] / count:7.2f} ms")
    print(f"  processor CPU  {1000 * cpu['process'] / count:7.2f} ms (serve loop and worker)")
    # The statistics queries themselves are a handful of statements: noise at these counts.
    print(f"  PostgreSQL     {(calls - calls_before) / count:7.1f} statements,"
          f" {(wal - wal_before) / count / 1024:6.1f} KiB WAL")


def saturation(server: PostgresServer, folder: Path, threads: list[int], seconds: float) -> None:
    print(f"queue alone ({seconds:g} s per figure, 4 KB payloads in a shared folder on local disk):")
    for count in threads:
        dsn = server.new_database()
        upgrade_schema(dsn)
        store = FolderStore(FolderPayloads(type="folder", path=folder / f"shared{count}"))
        spools = [PostgresSpool(dsn, store, folder / f"node{count}-{n}", node=f"n{n}")
                  for n in range(count)]
        admitted = _drive(spools, seconds, _admit)
        claimed = _drive(spools, seconds, _claim_and_finish)
        for spool in spools:
            spool.close()
        print(f"  {count:3d} connections: {admitted / seconds:8.0f} admits/s,"
              f" {claimed / seconds:8.0f} claims+records/s")


def _admit(spool: PostgresSpool, number: int) -> bool:
    received = spool.incoming_dir() / f"{number}.dcm"
    received.write_bytes(b"\0" * 4096)
    spool.admit(received, calling_ae="BENCH", called_ae="DMASK")
    return True


def _claim_and_finish(spool: PostgresSpool, number: int) -> bool:
    job = spool.claim()
    if job is None:
        return False
    spool.record_deliveries(job.id, ["out"], {}, None, output=spool.output_path(job.id),
                            destinations=["out"])
    return True


def _drive(spools: list[PostgresSpool], seconds: float, step) -> int:  # type: ignore[no-untyped-def]
    done = [0] * len(spools)
    deadline = time.monotonic() + seconds

    def run(index: int) -> None:
        number = 0
        while time.monotonic() < deadline:
            number += 1
            if step(spools[index], number):
                done[index] += 1

    workers = [threading.Thread(target=run, args=(n,)) for n in range(len(spools))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sum(done)


def measure(args: argparse.Namespace) -> None:
    server = PostgresServer()
    server.start()
    try:
        with tempfile.TemporaryDirectory(prefix="dmask-bench-cluster-") as folder:
            per_instance(server, Path(folder) / "cost", args.count)
            saturation(server, Path(folder) / "queue", args.threads, args.seconds)
    finally:
        server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--seconds", type=float, default=5)
    run_benchmark(parser, measure)


if __name__ == "__main__":
    main()
