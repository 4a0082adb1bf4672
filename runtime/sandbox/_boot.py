"""Sandbox boot: runs as the first process of one execution (`python -I -S _boot.py CONFIG_JSON`).

Standalone on purpose (no imports from `runtime`), so it starts fast and under `-I -S`. The parent has
already put this process in a new session (setsid) with stdin/stdout/stderr connected to files.

With `isolate` (root and a kernel that allows namespaces):
  outer boot ── unshare(mount, net, pid, ipc, uts) ── fork ──▶ pid 1 of the new pid namespace (root):
      private mounts: tmpfs over /tmp, /var/tmp, /dev/shm and over every directory that hides the
      interpreter from other users (e.g. /root), the interpreter's own directories bound back read-only,
      a fresh /proc; then fork ──▶ the program: rlimits, setgid/setuid to the sandbox uid, exec python.
  pid 1 reaps children until the program exits and then exits itself, which makes the kernel kill every
  process left in the namespace (daemons included). The tmpfs mounts vanish with the namespace.
Without `isolate`: rlimits, then exec python on the guard runner that refuses sockets (see _guard.py).

Exit status: the program's exit code, or 128 + signal number when a signal ended it. Facts about the sandbox
itself go to the report descriptor `report_fd` (close-on-exec, so the program cannot forge them): a line
`error: ...` when setting up failed, `left N process(es) running` when the program exited but left processes
in its namespace (the kernel kills them either way; the execution counts as failed).
"""

import ctypes
import json
import os
import resource
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
LEFT_PROCESSES = 123  # exit status when the program exits but leaves processes in its namespace
_report_fd = 2  # replaced by the parent's report descriptor, which the program never inherits

_libc = ctypes.CDLL(None, use_errno=True)


def _report(line):
    os.write(_report_fd, (line + "\n").encode())


def _guarded(fn, *args):
    """Run a step that must not return (it execs or exits); report anything it raises, then exit 125."""
    try:
        fn(*args)
    except BaseException as err:  # noqa: BLE001 - the report is the only way out of this process
        _report(f"error: {fn.__name__.lstrip('_')}: {type(err).__name__}: {err}")
    os._exit(125)


def _fail(what):
    err = ctypes.get_errno()
    _report(f"error: {what} failed: {os.strerror(err)}")
    os._exit(125)


def _enc(text):
    return text.encode() if text is not None else None


def _mount(src, target, fstype, flags, data):
    if _libc.mount(_enc(src), _enc(target), _enc(fstype), ctypes.c_ulong(flags), _enc(data)) != 0:
        _fail(f"mount {target}")


def _status(wait_status):
    if os.WIFSIGNALED(wait_status):
        return 128 + os.WTERMSIG(wait_status)
    return os.WEXITSTATUS(wait_status)


def _set_limits(lim):
    # Soft CPU limit sends SIGXCPU (catchable), the hard one a second later SIGKILL.
    resource.setrlimit(resource.RLIMIT_CPU, (lim["cpu_s"], lim["cpu_s"] + 1))
    resource.setrlimit(resource.RLIMIT_AS, (lim["memory"], lim["memory"]))
    resource.setrlimit(resource.RLIMIT_FSIZE, (lim["file_size"], lim["file_size"]))
    resource.setrlimit(resource.RLIMIT_NOFILE, (lim["open_files"], lim["open_files"]))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if lim.get("processes") is not None:
        resource.setrlimit(resource.RLIMIT_NPROC, (lim["processes"], lim["processes"]))


def _build_fs(cfg):
    """Private mount tree of pid 1 (see the module docstring)."""
    _mount(None, "/", None, MS_REC | MS_PRIVATE, None)
    keep_fds = {p: os.open(p, os.O_PATH) for p in cfg["keep"]}
    mounts = [m["path"] for m in cfg["tmpfs"]]
    for m in cfg["tmpfs"]:
        _mount("tmpfs", m["path"], "tmpfs", MS_NOSUID | MS_NODEV, f"size={m['size']},mode={m['mode']}")
    for path, fd in keep_fds.items():
        if not any(path.startswith(d.rstrip("/") + "/") for d in mounts):
            continue
        os.makedirs(path, exist_ok=True)
        _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC, None)
        _mount(None, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID, None)
    for fd in keep_fds.values():
        os.close(fd)
    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV, None)
    os.makedirs(cfg["workdir"], mode=0o700)
    os.chown(cfg["workdir"], cfg["uid"], cfg["gid"])


def _drop_privileges(cfg):
    _set_limits(cfg["limits"])
    os.chdir(cfg["workdir"])
    if cfg["uid"] is not None:
        os.setgroups([])
        os.setgid(cfg["gid"])
        os.setuid(cfg["uid"])
    os.umask(0o077)


def _run_in_process(cfg, main_path):
    """Run the program in this (forked, already initialised) interpreter, as `python main.py` would, and
    exit with its status. Used by the zygote, which saves an interpreter start-up per execution."""
    import atexit
    import io
    import runpy
    import signal
    import traceback

    _drop_privileges(cfg)
    # No exec here, so close-on-exec protects nothing: close every inherited descriptor but stdio (the
    # report descriptor included, so the program cannot forge sandbox reports).
    os.closerange(3, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    os.environ.clear()
    os.environ.update(cfg["env"])
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # CPython's own start-up settings (writes past RLIMIT_FSIZE then fail with EFBIG instead of killing)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False), encoding="utf-8")
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8", write_through=False)
    sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8", errors="backslashreplace",
                                  line_buffering=True)
    sys.argv = [main_path]
    sys.path[0] = os.path.dirname(main_path)
    sys.dont_write_bytecode = True
    status = 0
    try:
        runpy.run_path(main_path, run_name="__main__")
    except SystemExit as exc:
        status = _exit_status(exc.code)
    except BaseException as exc:  # noqa: BLE001 - print it as the interpreter would
        tb = exc.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename != main_path:
            tb = tb.tb_next  # hide the sandbox's own frames, as a fresh `python main.py` would show none
        traceback.print_exception(type(exc), exc, tb or exc.__traceback__)
        status = 1
    try:
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:  # noqa: BLE001 - a closed or full stdout must not hide the status
        status = status or 120
    os._exit(status)


def _exit_status(code):
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _exec_program(cfg, main_path):
    if cfg.get("in_process"):
        _run_in_process(cfg, main_path)
    _drop_privileges(cfg)
    argv = [cfg["python"], "-I", "-B"]
    argv += [cfg["guard"], main_path] if cfg["guard_net"] else [main_path]
    os.execve(cfg["python"], argv, cfg["env"])


def _run_init(cfg, code):
    """pid 1 of the new namespace: build the file tree, start the program, reap until it exits."""
    _build_fs(cfg)
    main_path = os.path.join(cfg["workdir"], "main.py")
    with open(main_path, "w", encoding="utf-8") as f:
        f.write(code)
    os.chmod(main_path, 0o644)
    prog = os.fork()
    if prog == 0:
        _guarded(_exec_program, cfg, main_path)
    while True:
        pid, st = os.waitpid(-1, 0)
        if pid == prog:
            break
    _reap()
    left = [p for p in os.listdir("/proc") if p.isdigit() and p != "1"]
    if left:
        _report(f"left {len(left)} process(es) running")
        os._exit(LEFT_PROCESSES)
    os._exit(_status(st))


def _reap():
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def main():
    run(json.loads(sys.argv[1]))


def run(cfg):
    """One execution, from this process on (see the module docstring); never returns."""
    global _report_fd
    _report_fd = cfg["report_fd"]
    os.set_inheritable(_report_fd, False)
    with open(cfg["code_path"], encoding="utf-8") as f:
        code = f.read()
    if not cfg["isolate"]:
        os.makedirs(cfg["workdir"], exist_ok=True)
        main_path = os.path.join(cfg["workdir"], "main.py")
        with open(main_path, "w", encoding="utf-8") as f:
            f.write(code)
        _guarded(_exec_program, cfg, main_path)
    if _libc.unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS) != 0:
        _fail("unshare")
    init = os.fork()
    if init == 0:
        _guarded(_run_init, cfg, code)
    _, st = os.waitpid(init, 0)
    os._exit(_status(st))


if __name__ == "__main__":
    main()
