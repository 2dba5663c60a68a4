"""The memory this machine can give the server now: MemAvailable, bounded by the memory limits of the
server's cgroups and their parents (v1 or v2), as a container's or a Kubernetes pod's are. Memory admission
(`i2v.serving.admission`) measures requests against it on a CPU."""

from __future__ import annotations

from pathlib import Path


def cpu_available_bytes() -> int:
    """MemAvailable, bounded by what the memory limits of this process's cgroups leave."""
    free = next(
        int(line.split()[1]) * 1024
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemAvailable:")
    )
    return min([free, *_cgroup_room()])


CGROUP_ROOT = Path("/sys/fs/cgroup")
# (the hierarchy's mount, its limit file, its usage file)
CGROUP_V2 = (CGROUP_ROOT, "memory.max", "memory.current")
CGROUP_V1 = (CGROUP_ROOT / "memory", "memory.limit_in_bytes", "memory.usage_in_bytes")
NO_LIMIT_V1 = 2**62  # v1 writes "no limit" as the largest page-aligned 63-bit number


def memory_cgroups() -> list[tuple[Path, tuple[Path, str, str]]]:
    """This process's cgroup folder in each hierarchy that can hold a memory limit (the v1 memory hierarchy's
    first, as /proc/self/cgroup lists them, then v2's), each with its hierarchy (`CGROUP_V1` / `CGROUP_V2`)."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        number, controllers, path = line.split(":", 2)
        if number == "0" and not controllers:
            hierarchy = CGROUP_V2
        elif "memory" in controllers.split(","):
            hierarchy = CGROUP_V1
        else:
            continue
        folder = hierarchy[0] / path.lstrip("/")
        if not folder.is_dir():  # a cgroup namespace's path beside the host's mount: the mount is ours
            folder = hierarchy[0]
        found.append((folder, hierarchy))
    return found


def _cgroup_room() -> list[int]:
    """limit - working set of every memory cgroup of this process with a limit: its own and each parent's (a
    pod's limit sits on the parent of its containers'), in cgroup v2 or the v1 memory hierarchy."""
    rooms = []
    for folder, (mount, limit_file, usage_file) in memory_cgroups():
        for cgroup in (folder, *folder.parents):
            try:
                limit = (cgroup / limit_file).read_text().strip()
                usage = int((cgroup / usage_file).read_text()) - inactive_file_bytes(cgroup)
            except (OSError, ValueError):
                pass
            else:
                if limit != "max" and int(limit) < NO_LIMIT_V1:
                    rooms.append(max(int(limit) - usage, 0))
            if cgroup == mount:
                break
    return rooms


def inactive_file_bytes(cgroup: Path) -> int:
    """The cgroup's page cache the kernel gives back first (the weights files read at load, for one): a
    cgroup's usage counts it, its working set does not (as the kubelet counts it). v1 names it
    total_inactive_file (with the children's), v2 inactive_file."""
    stat = dict(line.split() for line in (cgroup / "memory.stat").read_text().splitlines() if line.count(" ") == 1)
    return int(stat.get("total_inactive_file", stat.get("inactive_file", 0)))
