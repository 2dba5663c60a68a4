"""This machine's processes as `/proc/<pid>/stat` shows them: the one reader of that file for the launcher
(a server's process group), the supervisor and the drain (a server's Python-backend stubs, dead or alive) and
the benchmark's memory sampler. No subprocess, so a sampler calling it often costs the measured processes next
to nothing."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from i2v.serving.triton_install import STUB_NAME

PROC = Path("/proc")


@dataclass(frozen=True)
class ProcessStat:
    pid: int
    state: str  # R, S, D, ...; Z: a zombie (dead, waiting to be reaped by its parent); X: dead
    ppid: int
    pgid: int

    @property
    def alive(self) -> bool:
        return self.state not in ("Z", "X")


def process_stat(pid: int) -> ProcessStat | None:
    """The process's state, parent and process group; None once it is gone."""
    try:
        # the command name in parentheses may hold spaces and parentheses: the fields follow the last ")"
        state, ppid, pgid = (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[:3]
    except (OSError, ValueError):
        return None
    return ProcessStat(pid, state, int(ppid), int(pgid))


def processes() -> Iterator[ProcessStat]:
    """Every process still there when it is read."""
    for entry in PROC.iterdir():
        if entry.name.isdigit() and (stat := process_stat(int(entry.name))) is not None:
            yield stat


def is_alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    stat = process_stat(pid)
    return stat is not None and stat.alive


def process_group_members(pgid: int) -> list[int]:
    """Live processes of a process group: a server and its Python-backend stubs."""
    return [p.pid for p in processes() if p.pgid == pgid and p.alive]


@dataclass(frozen=True)
class Stub:
    pid: int
    model: str


def tritonserver_pids() -> list[int]:
    """Live processes named tritonserver in this PID namespace (the sidecar's way to find its server; a killed
    one not yet reaped is not among them)."""
    pids = []
    for process in processes():
        try:
            if process.alive and (PROC / str(process.pid) / "comm").read_text().strip() == "tritonserver":
                pids.append(process.pid)
        except OSError:
            continue
    return pids


def only_tritonserver_pid() -> int | None:
    """The one tritonserver of this PID namespace (a sidecar's, the container's drain); None if none or several."""
    pids = tritonserver_pids()
    return pids[0] if len(pids) == 1 else None


def python_stubs(server_pid: int) -> list[Stub]:
    """The live Python-backend stubs of one server: its children whose command line is the stub with a model.py
    (`<repository>/<model>/<version>/model.py`). A dead one (a zombie, not yet reaped) is not listed."""
    stubs = []
    for process in processes():
        if process.ppid != server_pid or not process.alive:
            continue
        try:
            command = (PROC / str(process.pid) / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if not command or not command[0].decode(errors="replace").endswith(STUB_NAME):
            continue
        model_py = Path(command[1].decode(errors="replace")) if len(command) > 1 else None
        model = model_py.parent.parent.name if model_py is not None else ""
        stubs.append(Stub(process.pid, model))
    return stubs
