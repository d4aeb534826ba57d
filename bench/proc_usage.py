"""CPU seconds of the processes a benchmark stack runs, read from /proc (Linux).

A group is a root process and everything below it. Its CPU is the root's own time, the time of
children it has reaped (cutime/cstime) and the time of descendants still alive, so a group's
count keeps growing smoothly as short-lived children (sshd sessions, `cat`, `ssh-keygen`) come
and go. Why: the 200-node benchmark must say which process (devcloud, its sshds, BIND, the DNS
service, the engine) spends the CPU per node, without instrumenting any of them.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Times:
    own: float       # the process's own user + system seconds
    children: float  # reaped children's user + system seconds


def _stat(pid: int) -> tuple[int, Times] | None:
    """(parent pid, times) of ``pid``, or None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2:].split()  # after "pid (comm) ": state is fields[0]
    utime, stime, cutime, cstime = (int(x) / _TICK for x in fields[11:15])
    return int(fields[1]), Times(utime + stime, cutime + cstime)


def _all_processes() -> dict[int, tuple[int, Times]]:
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (st := _stat(int(entry))) is not None:
            found[int(entry)] = st
    return found


def _descendants(root: int, table: dict[int, tuple[int, Times]]) -> list[int]:
    kids: dict[int, list[int]] = defaultdict(list)
    for pid, (ppid, _) in table.items():
        kids[ppid].append(pid)
    out, todo = [], list(kids[root])
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(kids[pid])
    return out


def group_cpu(roots: dict[str, int], split_children: frozenset[str] = frozenset()) -> dict[str, float]:
    """CPU seconds so far of each named process tree.

    For a name in ``split_children`` the root's own time is reported under the name and its
    children's (reaped and alive) under ``<name>-children``: devcloud's sshds are its children.
    """
    table = _all_processes()
    out: dict[str, float] = {}
    for name, root in roots.items():
        st = table.get(root)
        if st is None:
            continue
        own, reaped = st[1].own, st[1].children
        alive = sum(table[p][1].own + table[p][1].children for p in _descendants(root, table) if p in table)
        if name in split_children:
            out[name] = own
            out[f"{name}-children"] = reaped + alive
        else:
            out[name] = own + reaped + alive
    return out


def count_children(root: int, comm: str) -> int:
    """How many descendants of ``root`` run the program named ``comm`` (e.g. sshd)."""
    table = _all_processes()
    n = 0
    for pid in _descendants(root, table):
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == comm:
                n += 1
        except OSError:
            continue
    return n



def usage(pid: int) -> dict[str, float] | None:
    """RSS (MB), open file descriptors and threads of ``pid`` right now, or None when it is gone.

    The soak (bench_soak.py) samples these every 10 s to see whether a long-lived service grows.
    """
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {"rss_mb": round(int(fields["VmRSS"].split()[0]) / 1024, 1), "fds": fds,
            "threads": int(fields["Threads"].strip())}
