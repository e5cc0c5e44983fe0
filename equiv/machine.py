"""What this machine offers a check: memory a new allocation can get, CPUs this process may use."""

from __future__ import annotations

import os


def available_memory_bytes() -> int | None:
    """Memory the kernel says a new allocation can get (``MemAvailable``), or None where it
    does not say (not Linux)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity where the system says, else the count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1
