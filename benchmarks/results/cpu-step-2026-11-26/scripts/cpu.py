"""CPU used by each process (and, for one, each thread) over a window: argv seconds [command-line part]. The
models' stubs are named by their model, from the model.py path on their command line."""

import collections
import os
import sys
import time
from pathlib import Path

HZ = os.sysconf("SC_CLK_TCK")


def snapshot() -> dict:
    threads = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
            for tid in os.listdir(f"/proc/{pid}/task"):
                stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
                fields = stat[stat.rfind(")") + 2 :].split()
                status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
                switches = int(status.split("\nvoluntary_ctxt_switches:")[1].split()[0])
                threads[(pid, tid)] = (int(fields[11]) + int(fields[12]), command, switches)
        except (OSError, IndexError):
            pass
    return threads


def name(command: str) -> str:
    words = command.split()
    return words[1].split("/")[-3] if len(words) > 1 and words[1].endswith("model.py") else command[:40]


before, start = snapshot(), time.time()
time.sleep(float(sys.argv[1]))
after, seconds = snapshot(), time.time() - start
cpu, switches = collections.defaultdict(float), collections.Counter()
for key, (ticks, command, count) in after.items():
    if key in before:
        cpu[name(command)] += (ticks - before[key][0]) / HZ / seconds * 100
        switches[name(command)] += (count - before[key][2]) / seconds
        if len(sys.argv) > 2 and sys.argv[2] in command and ticks > before[key][0]:
            print(f"  thread {key[1]:>7}: {(ticks - before[key][0]) / HZ / seconds * 100:6.1f}% of a core")
for process, share in sorted(cpu.items(), key=lambda item: -item[1])[:10]:
    print(f"{process:40s} {share:6.1f}% of a core, {switches[process]:7.0f} voluntary switches/s")
