"""Network guard for sandboxes without a network namespace: `python -I -B _guard.py main.py`.

An audit hook (PEP 578) refuses creating, connecting or binding any non-Unix socket, then the program runs as
`__main__`. Audit hooks cannot be removed from Python code, but native code (ctypes calling libc `connect`, a
C extension) bypasses them; the network namespace used when the kernel allows it has no such hole.
"""

import runpy
import socket
import sys

_REFUSED = {"socket.__new__", "socket.connect", "socket.bind", "socket.sendto", "socket.getaddrinfo"}


def _hook(event, args):
    if event not in _REFUSED:
        return
    if event == "socket.__new__" and len(args) > 1 and args[1] == socket.AF_UNIX:
        return
    raise PermissionError(f"network access is disabled in the sandbox ({event})")


def main():
    path = sys.argv[1]
    sys.argv = sys.argv[1:]
    sys.addaudithook(_hook)
    sys.path[0] = path.rsplit("/", 1)[0]
    runpy.run_path(path, run_name="__main__")


if __name__ == "__main__":
    main()
