"""Sandbox zygote: a long-lived interpreter that forks one execution per request (`python -I -B _zygote.py`).

Starting a Python interpreter costs far more than the typical test program, so the parent keeps one zygote
per process: each request (one JSON line on stdin: `{"id", "cfg", "files", "judge"}`) is served by a fork that
opens its stdio files, starts a new session and continues in `_boot.run`, so the program runs inside the
forked, already-initialised interpreter. When `judge` is set (assert-style tests), the zygote first makes two
pipes and also forks the trusted judge (`_judge.py`), which reads the tests from a file that the execution
never opens, and talks to the program over the pipes only. Requests carry no test text, so a fork holds none.
Answers: `{"id", "pid", "judge_pid"}` once forked, then `{"id", "role", "rc"}` for each process reaped.
Single-threaded, so forking it is safe. It exits when its stdin closes.
"""

import fcntl
import json
import os
import resource
import select
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # -I leaves the script's directory out

import _boot  # noqa: E402
import _judge  # noqa: E402,F401 - loaded once here, so a judge fork starts at once
import _plain  # noqa: E402,F401
import _serve  # noqa: E402,F401


def _arrange(fds):
    """Put each descriptor on its target number ({target: fd}) and close every other one."""
    high = {target: fcntl.fcntl(fd, fcntl.F_DUPFD, 64) for target, fd in fds.items()}
    for fd in set(fds.values()):
        os.close(fd)
    for target, fd in high.items():
        os.dup2(fd, target)
    os.closerange(max(high) + 1, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    for target in set(range(max(high) + 1)) - high.keys():
        try:
            os.close(target)
        except OSError:
            pass


def _child(request, channel):
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    files = request["files"]
    os.setsid()
    fds = {0: os.open(files["stdin"], os.O_RDONLY), 1: os.open(files["stdout"], os.O_WRONLY),
           2: os.open(files["stderr"], os.O_WRONLY), _boot.REPORT: os.open(files["report"], os.O_WRONLY)}
    if channel:
        fds[_boot.REQUESTS], fds[_boot.ANSWERS] = channel
    _arrange(fds)
    os.set_inheritable(_boot.REPORT, False)
    _boot.run(dict(request["cfg"], serve=bool(channel)))


def _judge_child(request, channel):
    """The trusted judge: its own session and limits, no stdio; the caller's uid, like the trainer that reads
    the same tests (the interpreter may live where only that uid can read, e.g. under /root)."""
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    os.setsid()
    with open(request["files"]["judge"], encoding="utf-8") as f:
        spec = json.load(f)
    null = os.open(os.devnull, os.O_RDWR)
    _arrange({0: null, 1: os.dup(null), 2: os.dup(null), 3: channel[0], 4: channel[1],
              5: os.open(request["files"]["verdict"], os.O_WRONLY)})
    lim = request["cfg"]["limits"]
    resource.setrlimit(resource.RLIMIT_AS, (lim["memory"], lim["memory"]))
    resource.setrlimit(resource.RLIMIT_CPU, (lim["cpu_s"], lim["cpu_s"] + 1))
    _judge.main(spec, 5, 3, 4)


def _fork_judge(request, wake):
    """(pipe ends for the program, judge pid); the zygote keeps none of the four ends."""
    requests_r, requests_w = os.pipe()
    answers_r, answers_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        for fd in (*wake, requests_r, answers_w):
            os.close(fd)
        _boot._guarded(_judge_child, request, (requests_w, answers_r))
    os.close(requests_w)
    os.close(answers_r)
    return (requests_r, answers_w), pid


def _send(obj):
    os.write(1, (json.dumps(obj) + "\n").encode())


def _start(request, running, wake):
    channel, judge_pid = _fork_judge(request, wake) if request.get("judge") else ((), None)
    pid = os.fork()
    if pid == 0:
        for fd in wake:
            os.close(fd)
        _boot._guarded(_child, request, channel)
    for fd in channel:
        os.close(fd)
    running[pid] = (request["id"], "exec")
    if judge_pid is not None:
        running[judge_pid] = (request["id"], "judge")
    _send({"id": request["id"], "pid": pid, "judge_pid": judge_pid})


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
                call_id, role = running.pop(pid)
                _send({"id": call_id, "role": role, "rc": _boot._status(status)})
        if 0 in ready:
            chunk = os.read(0, 65536)
            if not chunk:
                os._exit(0)
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                _start(json.loads(line), running, (wake_r, wake_w))


if __name__ == "__main__":
    sys.exit(main())
