"""The processes of a build: stop every one of them when the build is stopped.

A build with ``--jobs N`` runs chapters in a pool of worker processes, and each worker
starts a Jupyter kernel (in a session of its own, so a Ctrl-C in the terminal never
reaches it). Stopping the main process must not leave them running:

- :func:`stop_tree_on_signals`: while a build runs, SIGTERM and SIGINT raise
  :class:`Interrupted` in the main process; on the way out every descendant process
  (workers, kernels, Jupyter Book) gets SIGTERM, then SIGKILL after a grace period.
- :func:`worker_init`: the pool's initializer. A worker ignores SIGINT (the main process
  decides), stops its own children and exits on SIGTERM, and exits as soon as its parent
  is gone (a killed main process cannot clean up: the worker notices that it has been
  re-parented, stops its kernel and exits).

Descendants are read from ``/proc`` (Linux), else with ``psutil`` where it is installed,
else from ``ps``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from typing import Iterator

__all__ = ["Interrupted", "descendants", "terminate", "stop_tree_on_signals", "worker_init"]

#: Seconds between SIGTERM and SIGKILL when stopping processes.
GRACE_SECONDS = 3.0
#: How often a pool worker checks that its parent is still there.
PARENT_POLL_SECONDS = 0.5


class Interrupted(KeyboardInterrupt):
    """The build was stopped by a signal (``signum``); its processes have been stopped."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    def __str__(self) -> str:
        return f"interrupted by {self.name}"


def _children_map() -> dict[int, list[int]]:
    """``{parent pid: [child pids]}`` of every process this user can see."""
    out: dict[int, list[int]] = {}
    if os.path.isdir("/proc/self"):
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    stat = f.read().decode("ascii", "replace")
            except OSError:
                continue
            # the command name may hold spaces and parentheses: split after the last ')'
            fields = stat.rsplit(")", 1)[-1].split()
            if len(fields) > 1 and fields[0] != "Z":
                out.setdefault(int(fields[1]), []).append(int(entry))
        return out
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        for proc in psutil.process_iter(["pid", "ppid"]):
            out.setdefault(proc.info["ppid"], []).append(proc.info["pid"])
        return out
    try:  # pragma: no cover - neither /proc nor psutil
        text = subprocess.run(["ps", "-A", "-o", "pid=,ppid="], capture_output=True, text=True,
                              timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return out
    for line in text.splitlines():  # pragma: no cover
        pid, ppid = (int(v) for v in line.split())
        out.setdefault(ppid, []).append(pid)
    return out


def descendants(pid: int | None = None, skip=frozenset()) -> list[int]:
    """Every live (not zombie) descendant of ``pid`` (default: this process), parents
    before their children; the processes in ``skip`` and their subtrees left out."""
    pid = os.getpid() if pid is None else pid
    children = _children_map()
    out, todo, seen = [], [pid], {pid}
    while todo:
        for child in children.get(todo.pop(0), []):
            if child not in seen and child not in skip:
                seen.add(child)
                out.append(child)
                todo.append(child)
    return out


def children_of_self() -> list[int]:
    """This process's direct children (the processes started before a block, kept)."""
    return _children_map().get(os.getpid(), [])


def alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().decode("ascii", "replace").rsplit(")", 1)[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:  # pragma: no cover - no /proc
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def _signal(pids, signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)


def terminate(pids, grace: float = GRACE_SECONDS) -> list[int]:
    """SIGTERM every process of ``pids``, then SIGKILL the ones still alive after ``grace``
    seconds. Returns the pids that had to be killed."""
    pids = [p for p in pids if p != os.getpid()]
    _signal(pids, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not any(alive(p) for p in pids):
            return []
        time.sleep(0.05)
    left = [p for p in pids if alive(p)]
    _signal(left, signal.SIGKILL)
    return left


def stop_descendants(grace: float = GRACE_SECONDS, keep: set[int] = frozenset()) -> int:
    """Stop every descendant of this process but those in ``keep`` (and their subtrees),
    and any that appear meanwhile (a worker may be starting a kernel). Returns how many
    were stopped."""
    stopped: set[int] = set()
    for _ in range(5):
        pids = [p for p in descendants(skip=keep) if p not in stopped]
        if not pids:
            break
        terminate(pids, grace)
        stopped.update(pids)
    return len(stopped)


@contextlib.contextmanager
def stop_tree_on_signals(echo=None) -> Iterator[None]:
    """While the block runs, SIGTERM and SIGINT raise :class:`Interrupted` (SIGINT as
    Python does by default, but after the same clean-up); when the block is interrupted,
    every process started while it ran (and their descendants) is stopped before the
    exception propagates. Signal handlers can only be set from the main thread: in other
    threads only the clean-up after a KeyboardInterrupt applies."""
    installed: dict[int, object] = {}
    before = set(children_of_self())

    stopped = [0]

    def handler(signum, frame):
        # one interrupt is enough: further signals are ignored while the processes stop.
        # Stop them first, so that nothing waits on a kernel while the exception unwinds.
        for sig in installed:
            signal.signal(sig, signal.SIG_IGN)
        stopped[0] = stop_descendants(keep=before)
        raise Interrupted(signum)

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            installed[sig] = signal.signal(sig, handler)
    try:
        yield
    except KeyboardInterrupt as exc:
        for sig in installed:
            signal.signal(sig, signal.SIG_IGN)
        n = stopped[0] + stop_descendants(keep=before)
        if echo is not None:
            echo(f"  {exc if isinstance(exc, Interrupted) else 'interrupted'}: "
                 f"stopped {n} process(es) of the build")
        raise
    finally:
        for sig, previous in installed.items():
            signal.signal(sig, previous)


def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(PARENT_POLL_SECONDS)
        if os.getppid() != parent:  # re-parented: the main process is gone
            stop_descendants(grace=1.0)
            os._exit(1)


def _on_sigterm(signum, frame) -> None:
    stop_descendants(grace=1.0)
    os._exit(128 + signum)


def worker_init(parent: int) -> None:
    """Initializer of the pool's worker processes (``parent``: the main process's pid)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_sigterm)
    if os.getppid() != parent:  # the main process died while this worker started
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent,), name="alignbook-parent-watch",
                     daemon=True).start()
