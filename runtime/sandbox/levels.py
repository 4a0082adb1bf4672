"""Which isolation level this host gives, and the rule that the weaker one is only used when asked for.

- ``namespaces``: root, Linux, and a kernel that lets this process `unshare` mount, pid, network, IPC and UTS
  namespaces. Full guarantees (docs/sandbox.md).
- ``rlimits``: anything else. The program runs as the caller's uid with rlimits and a network audit hook;
  it can read what the caller can read. Used only when `CASCADEC_SANDBOX=rlimits` is set or the reward
  opts in (`unit_tests(..., sandbox = rlimits)`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from functools import cache
from typing import Literal

Level = Literal["namespaces", "rlimits"]
ENV = "CASCADEC_SANDBOX"
_FLAGS = "0x00020000|0x40000000|0x20000000|0x08000000|0x04000000"  # NEWNS|NEWNET|NEWPID|NEWIPC|NEWUTS
HOW = ("run as root on Linux where unshare(2) of mount, pid and network namespaces is permitted: in Docker "
       "`--cap-add SYS_ADMIN --security-opt seccomp=unconfined --security-opt apparmor=unconfined` (or "
       "`--privileged`), in Kubernetes a container with CAP_SYS_ADMIN; or opt in to the weaker level with "
       f"`{ENV}=rlimits` or `unit_tests(..., sandbox = rlimits)` (docs/sandbox.md says what it does not stop)")


class SandboxUnavailable(RuntimeError):
    """The namespaces level is missing and nobody opted in to the rlimits level."""


@cache
def probe() -> tuple[Level, str]:
    """(best level of this host, why the namespaces level is missing or ""), probed once in a child."""
    if not sys.platform.startswith("linux"):
        return "rlimits", f"namespaces are Linux-only (this is {sys.platform})"
    if os.geteuid() != 0:
        return "rlimits", (f"the process is not root (euid {os.geteuid()}); the sandbox does not use user "
                           "namespaces, so it needs root to create mount, pid and network namespaces")
    code = f"import ctypes,os,sys;r=ctypes.CDLL(None,use_errno=True).unshare({_FLAGS});" \
           "sys.exit(os.strerror(ctypes.get_errno()) if r else 0)"
    done = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, timeout=30)
    if done.returncode == 0:
        return "namespaces", ""
    return "rlimits", (f"the kernel refused unshare() of mount, pid and network namespaces: "
                       f"{done.stderr.strip() or 'exit ' + str(done.returncode)} (CAP_SYS_ADMIN missing, or a "
                       "seccomp/AppArmor profile forbids namespaces)")


def isolation() -> Level:
    """The level executions use now: `rlimits` when `CASCADEC_SANDBOX=rlimits`, else this host's best."""
    return "rlimits" if os.environ.get(ENV) == "rlimits" else probe()[0]


def require(allow_rlimits: bool = False) -> Level:
    """The level to run untrusted code at, refusing the weaker one unless it is opted in to.

    Raises:
        SandboxUnavailable: the namespaces level is missing, and neither `allow_rlimits` nor
            `CASCADEC_SANDBOX=rlimits` opts in; the message says what is missing and how to get it.
    """
    level = isolation()
    if level == "namespaces" or allow_rlimits or os.environ.get(ENV) == "rlimits":
        return level
    raise SandboxUnavailable(f"the code sandbox's namespaces level is unavailable: {probe()[1]}. To get it, "
                             f"{HOW}")


def describe() -> str:
    """One line for `lint --check-rewards` and `cascadec run`: the level in use and why."""
    best, why = probe()
    if isolation() == "namespaces":
        return "code sandbox: namespaces (private mount, pid and network namespaces; docs/sandbox.md)"
    if best == "namespaces":
        return f"code sandbox: rlimits, forced by {ENV}=rlimits (weaker; docs/sandbox.md)"
    return f"code sandbox: rlimits only ({why}); code rewards refuse it unless opted in"
