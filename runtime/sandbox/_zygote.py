"""Sandbox zygote: a long-lived root interpreter that forks one execution per request (`python -I -B _zygote.py`).

Starting a Python interpreter costs far more than the typical test program, so at the namespaces level the
parent keeps one zygote per process: each request (one JSON line on stdin: `{"id", "cfg", "files"}`) is
served by a fork that opens its stdio files, starts a new session and continues exactly like `_boot.run`,
except that the program runs inside the forked, already-initialised interpreter instead of a fresh one.
The zygote answers `{"id", "pid"}` once the fork exists and `{"id", "rc"}` when it has been reaped; it is
single-threaded, so forking it is safe. It exits when its stdin closes.
"""

import json
import os
import select
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # -I leaves the script's directory out

import _boot  # noqa: E402


def _child(request):
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    files = request["files"]
    _boot._report_fd = os.open(files["report"], os.O_WRONLY)
    os.setsid()
    for fd, (path, flags) in enumerate(((files["stdin"], os.O_RDONLY), (files["stdout"], os.O_WRONLY),
                                        (files["stderr"], os.O_WRONLY))):
        opened = os.open(path, flags)
        os.dup2(opened, fd)
        os.close(opened)
    _boot.run(dict(request["cfg"], in_process=True, report_fd=_boot._report_fd))


def _send(obj):
    os.write(1, (json.dumps(obj) + "\n").encode())


def main():
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    running = {}
    buffer = b""
    while True:
        ready, _, _ = select.select([0, wake_r], [], [])
        if wake_r in ready:
            os.read(wake_r, 4096)
            while running:
                try:
                    pid, status = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if pid == 0:
                    break
                _send({"id": running.pop(pid), "rc": _boot._status(status)})
        if 0 in ready:
            chunk = os.read(0, 65536)
            if not chunk:
                os._exit(0)
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                request = json.loads(line)
                pid = os.fork()
                if pid == 0:
                    os.close(wake_r)
                    os.close(wake_w)
                    _boot._guarded(_child, request)
                running[pid] = request["id"]
                _send({"id": request["id"], "pid": pid})


if __name__ == "__main__":
    sys.exit(main())
