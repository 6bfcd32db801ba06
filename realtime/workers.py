"""Worker processes for ``emocam batch``: N spawned processes run one function over many jobs, one job each at a time.
They die with their parent, even on kill -9; one that dies on a job (a crash, the kernel's OOM killer) is told as that
job's outcome and replaced, and the batch goes on. Never more of them than the machine runs at once."""

from __future__ import annotations

import ctypes
import os
import signal
import threading
import time
from collections import deque
from multiprocessing import get_context
from multiprocessing.connection import wait
from typing import Callable, Iterable, Iterator, TypeVar

J = TypeVar("J")
R = TypeVar("R")

# What one worker takes with the shipped model loaded (310-330 MB measured over a 100-input batch), with a margin:
# workers beyond the memory available for this many bytes each would only swap.
WORKER_BYTES = 400 << 20
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def usable_workers(asked: int, jobs: int) -> tuple[int, str | None]:
    """How many workers to start for ``asked`` and ``jobs``: no more than the CPUs this process may use, the workers
    the available memory holds, or the jobs; and a line saying so where the machine, not the jobs, took some away."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    free = available_memory()
    room = cpus if free is None else max(1, min(cpus, free // WORKER_BYTES))
    why = None
    if asked > room:
        memory = "" if free is None else f", {free / 2**30:.1f} GiB of memory available"
        why = f"--workers {asked}: this machine runs {room} at once ({cpus} CPUs{memory}); using {room}"
    return max(1, min(asked, room, jobs)), why


def available_memory() -> int | None:
    """Bytes of memory available to new processes (Linux's MemAvailable); None where it is not known."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def run_in_workers(fn: Callable[[J], R], jobs: Iterable[J], workers: int,
                   died: Callable[[J, int, str], R]) -> Iterator[R]:
    """``fn(job)`` for each job in ``workers`` spawned processes, each result as it comes. A worker that dies on a
    job gives ``died(job, its pid, how it died)`` instead, and a new worker takes its place. An exception ``fn``
    raises ends the run, raised here. Workers still running when the caller stops are killed."""
    context = get_context("spawn")  # not forked: the parent's decode and detect threads must not be copied mid-flight
    pending = deque(jobs)
    slots: list[list] = []  # [process, connection, job it is on or None]

    def start() -> list:
        ours, theirs = context.Pipe()
        process = context.Process(target=serve, args=(theirs, os.getpid(), fn), name="emocam-worker", daemon=True)
        process.start()
        theirs.close()
        return [process, ours, None]

    try:
        slots.extend(start() for _ in range(min(workers, len(pending))))
        while pending or any(slot[2] is not None for slot in slots):
            for i, slot in enumerate(slots):
                if slot[2] is None and pending:
                    if not slot[0].is_alive():  # died on its last job or between jobs: a new one takes its place
                        slot[1].close()
                        slots[i] = slot = start()
                    slot[2] = pending.popleft()
                    slot[1].send(slot[2])
            busy = [slot for slot in slots if slot[2] is not None]
            ready = set(wait([slot[1] for slot in busy] + [slot[0].sentinel for slot in busy]))
            for slot in busy:
                process, connection, job = slot
                if connection not in ready and process.sentinel not in ready:
                    continue
                slot[2] = None
                try:
                    ok, value = connection.recv()
                except (EOFError, OSError):  # it died on this job; its slot gets a new worker with the next job
                    process.join()
                    yield died(job, process.pid, how_it_ended(process.exitcode))
                    continue
                if not ok:
                    raise value
                yield value
    finally:
        for process, connection, job in slots:
            if job is None and process.is_alive():
                try:
                    connection.send(None)  # done: it returns
                except OSError:
                    pass
            else:
                process.kill()  # stopped mid-job: what it leaves half written is cleaned by the next run
        for process, connection, _ in slots:
            process.join(timeout=5.0)
            if process.is_alive():
                process.kill()
                process.join()
            connection.close()


def how_it_ended(exitcode: int | None) -> str:
    """A dead process's exit status in words: the signal that killed it (SIGKILL, SIGSEGV ...) or its exit code."""
    if exitcode is not None and exitcode < 0:
        try:
            return signal.Signals(-exitcode).name
        except ValueError:
            return f"signal {-exitcode}"
    return f"exit code {exitcode}"


def serve(connection, parent: int, fn: Callable) -> None:
    """A worker's life: take a job, send back (True, result) or (False, the exception), until told None."""
    die_with(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent ends the workers
    while True:
        try:
            job = connection.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        try:
            answer = (True, fn(job))
        except Exception as e:  # noqa: BLE001 - handed to the parent, which raises it
            answer = (False, e)
        try:
            connection.send(answer)
        except (OSError, ValueError):
            return
        except Exception as e:  # noqa: BLE001 - an answer that cannot be pickled is still an answer
            connection.send((False, RuntimeError(f"{type(e).__name__}: {e}")))


def die_with(parent: int) -> None:
    """Make this process die when ``parent`` does, even on kill -9: the kernel's parent-death signal where there is
    one (Linux), else a thread that watches the parent."""
    try:
        asked = ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    except (OSError, AttributeError):
        asked = False
    if os.getppid() != parent:  # it died before the signal was asked for
        os._exit(1)
    if not asked:
        threading.Thread(target=_watch, args=(parent,), name="emocam-parent-watch", daemon=True).start()


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)
