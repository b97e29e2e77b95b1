"""A real Dask cluster for tests: `dask scheduler` and `dask worker` processes on 127.0.0.1,
stopped by PID."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from servers import free_port

from mmops.processes import stop_group

DASK = Path(sys.executable).parent / "dask"
# a test machine shared with other jobs can starve a process for longer than the default 30 s
TIMEOUTS = {"distributed.comm.timeouts.connect": "120s", "distributed.comm.timeouts.tcp": "120s"}


@dataclass
class DaskCluster:
    address: str
    workers: int
    procs: list[subprocess.Popen]
    folder: Path

    def wait(self, timeout: float = 120) -> str:
        """Block until every worker has joined the scheduler; the scheduler's address."""
        from distributed import Client

        try:  # the client retries until the scheduler listens
            with Client(self.address, timeout=timeout) as client:
                client.wait_for_workers(self.workers, timeout=timeout)
        except Exception as err:
            logs = "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in sorted(self.folder.glob("*.log")))
            exited = [p.args[1] for p in self.procs if p.poll() is not None]
            raise RuntimeError(f"Dask cluster not ready ({err!r}); exited: {exited}\n{logs}") from err
        return self.address


@contextmanager
def dask_cluster(folder: Path, workers: int = 2, preload: tuple[str, ...] = ()) -> Iterator[DaskCluster]:
    """Start a scheduler and `workers` single-threaded worker processes, each under its nanny as in
    a real deployment; each process imports the `preload` modules as it starts (the scheduler
    unpickles every submitted task, so it imports the task's modules too); stop them all when the block
    ends. Yields at once: call `.wait()` before use (start something else meanwhile). Comm timeouts
    are raised to `TIMEOUTS` here and in the cluster."""
    import dask

    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, **{"DASK_" + key.upper().replace(".", "__").replace("-", "_"): value
                            for key, value in TIMEOUTS.items()}}
    with ExitStack() as stack:
        procs = []
        stack.enter_context(dask.config.set(TIMEOUTS))  # and for clients in this process

        def start(cmd: list[str], log: Path) -> None:
            with open(log, "w") as out:
                procs.append(subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env,
                                              start_new_session=True))
            stack.callback(stop_group, procs[-1], 20)

        preloads = [arg for module in preload for arg in ("--preload", module)]
        start([str(DASK), "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard", *preloads],
              folder / "scheduler.log")
        for n in range(workers):
            start([str(DASK), "worker", address, "--name", f"w{n}", "--nworkers", "1", "--nthreads", "1",
                   "--host", "127.0.0.1", "--no-dashboard", "--local-directory", str(folder / f"w{n}"), *preloads],
                  folder / f"worker-{n}.log")
        yield DaskCluster(address, workers, procs, folder)
