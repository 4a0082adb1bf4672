"""Sandbox boot: one execution, from a fresh fork of the zygote on (see `_zygote.py`).

Standalone on purpose (no imports from `runtime`). The zygote has already put this process in a new session
with stdin/stdout/stderr on files, the call pipes (when a judge runs) on descriptors 3 and 4 and the report
descriptor on 5.

With `isolate` (root and a kernel that allows namespaces):
  this process ── unshare(mount, net, pid, ipc, uts) ── fork ──▶ pid 1 of the new pid namespace (root):
      a new root file system (a tmpfs holding read-only binds of only what the interpreter needs: /usr, the
      standard library, the interpreter, allow-listed packages; see `runtime/sandbox/fsplan.py`), private
      tmpfs mounts for /tmp, /var/tmp, /dev/shm and /run, a few device nodes and a fresh /proc, entered with
      pivot_root (the host's tree is detached); then fork ──▶ the program: rlimits, setgid/setuid to the
      sandbox uid, the program inside this already-initialised interpreter.
  pid 1 watches the execution's total memory (`_watch`) and reaps until the program exits, then exits
  itself, which makes the kernel kill every process left in the namespace. The mounts vanish with it.
Without `isolate`: rlimits, a network guard (an audit hook), then the program in this process.

Exit status: the program's exit code, or 128 + signal number. Facts about the sandbox go to the report
descriptor, which the program never holds: `error: ...` when setting up failed, `left N process(es)
running`, `memory: ...` when the execution's processes together went over the memory limit.
"""

import ctypes
import os
import resource
import select
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 32, 4096, 16384, 1 << 18
MNT_DETACH = 2
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "ppc64le": 203}.get(os.uname().machine, 155)
REQUESTS, ANSWERS, REPORT = 3, 4, 5
LEFT_PROCESSES, OVER_MEMORY = 123, 124
NEW_ROOT = "/tmp"  # the new root's tmpfs is mounted here (in the private mount namespace), then pivoted into
WATCH_S = 0.01
_report_fd = REPORT

_libc = ctypes.CDLL(None, use_errno=True)


def _report(line):
    try:
        os.write(_report_fd, (line + "\n").encode())
    except OSError:
        pass  # the report descriptor is gone once the program runs; only its exit status is left


def _guarded(fn, *args):
    """Run a step that must not return (it exits); report anything it raises, then exit 125. A fork of the
    zygote must never return into the zygote's loop."""
    try:
        fn(*args)
    except BaseException as err:  # noqa: BLE001 - the report is the only way out of this process
        try:
            _report(f"error: {fn.__name__.lstrip('_')}: {type(err).__name__}: {err}")
        finally:
            os._exit(125)
    os._exit(125)


def _fail(what):
    _report(f"error: {what} failed: {os.strerror(ctypes.get_errno())}")
    os._exit(125)


def _enc(text):
    return text.encode() if text is not None else None


def _mount(src, target, fstype, flags, data=None):
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


def _target(path, kind):
    """Create the mount point `path` (a directory, or an empty file for a file bind)."""
    if kind == "dir":
        os.makedirs(path, exist_ok=True)
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o644))


def _apply(op, fds):
    """One step of the file-system plan (see fsplan.py), relative to the new root."""
    kind, path = op["op"], NEW_ROOT + op["path"]
    if kind == "bind":
        _target(path, op["kind"])
        _mount(f"/proc/self/fd/{fds[op['src']]}", path, None, MS_BIND | MS_REC)
        if op["ro"]:
            _mount(None, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    elif kind == "tmpfs":
        os.makedirs(path, exist_ok=True)
        _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, f"size={op['size']},mode={op['mode']}")
    elif kind == "dir":
        os.makedirs(path, exist_ok=True)
    elif kind == "ro":
        _mount(None, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    elif kind == "symlink":
        os.makedirs(os.path.dirname(path), exist_ok=True)
        os.symlink(op["target"], path)


def _build_fs(cfg):
    """The new root of pid 1 (see the module docstring and fsplan.py)."""
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    plan = cfg["fs"]
    fds = {op["src"]: os.open(op["src"], os.O_PATH) for op in plan if op["op"] == "bind"}
    _mount("tmpfs", NEW_ROOT, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=755")
    for op in plan:
        _apply(op, fds)
    for fd in fds.values():
        os.close(fd)
    os.chdir(NEW_ROOT)
    if _libc.syscall(SYS_PIVOT_ROOT, b".", b".") != 0:
        _fail("pivot_root")
    if _libc.umount2(b".", MNT_DETACH) != 0:
        _fail("detaching the host's root")
    os.chdir("/")
    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV)
    _mount(None, "/", None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
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


def _net_guard(event, args):
    """Audit hook of the rlimits level: no sockets but Unix ones (native code bypasses it; docs/sandbox.md)."""
    if event in ("socket.connect", "socket.bind", "socket.sendto", "socket.getaddrinfo") or \
            (event == "socket.__new__" and not (len(args) > 1 and args[1] == 1)):  # 1: AF_UNIX
        raise PermissionError(f"network access is disabled in the sandbox ({event})")


def _run_in_process(cfg, main_path):
    """Run the program in this (forked, already initialised) interpreter, as `python main.py` would (or, with
    a judge, as a call server: `_serve.py`), and exit with its status."""
    import atexit
    import io
    import signal

    _drop_privileges(cfg)
    # No exec here, so close-on-exec protects nothing: close every inherited descriptor but stdio and the
    # call pipes (the report descriptor included, so the program cannot forge sandbox reports).
    os.closerange(REQUESTS if not cfg["serve"] else REPORT, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
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
    sys.path[1:1] = [p for p in cfg["path"] if p not in sys.path]
    sys.dont_write_bytecode = True
    if cfg["guard_net"]:
        sys.addaudithook(_net_guard)
    os._exit(_program_status(cfg, main_path, atexit))


def _program_status(cfg, main_path, atexit):
    import runpy
    import traceback

    status = 0
    try:
        if cfg["serve"]:
            import _serve
            status = _serve.serve(main_path)
        else:
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
    return status


def _exit_status(code):
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _memory_in_use():
    """Proportional set size (bytes) of every process of this pid namespace but pid 1."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or entry == "1":
            continue
        try:
            with open(f"/proc/{entry}/smaps_rollup", "rb") as f:
                for line in f:
                    if line.startswith(b"Pss:"):
                        total += int(line.split()[1]) * 1024
                        break
        except (OSError, ValueError):
            continue
    return total


def _watch(prog, limit):
    """Wait for the program; kill the whole namespace if its processes together use more than `limit`."""
    fd = os.pidfd_open(prog)
    while not select.select([fd], [], [], WATCH_S)[0]:
        used = _memory_in_use()
        if used > limit:
            os.kill(-1, 9)  # from pid 1: every other process of this namespace
            _report(f"memory: the execution's processes used {used} bytes together (limit {limit})")
            os._exit(OVER_MEMORY)
    os.close(fd)


def _close_channel(cfg):
    if cfg["serve"]:
        os.close(REQUESTS)
        os.close(ANSWERS)


def _run_init(cfg, code):
    """pid 1 of the new namespace: build the file tree, start the program, watch and reap until it exits."""
    _build_fs(cfg)
    main_path = os.path.join(cfg["workdir"], "main.py")
    with open(main_path, "w", encoding="utf-8") as f:
        f.write(code)
    os.chmod(main_path, 0o644)
    prog = os.fork()
    if prog == 0:
        _guarded(_run_in_process, cfg, main_path)
    _close_channel(cfg)
    _watch(prog, cfg["limits"]["memory"])
    _, st = os.waitpid(prog, 0)
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


def run(cfg):
    """One execution, from this process on (see the module docstring); never returns."""
    with open(cfg["code_path"], encoding="utf-8") as f:
        code = f.read()
    if not cfg["isolate"]:
        os.makedirs(cfg["workdir"], exist_ok=True)
        main_path = os.path.join(cfg["workdir"], "main.py")
        with open(main_path, "w", encoding="utf-8") as f:
            f.write(code)
        _guarded(_run_in_process, cfg, main_path)
    if _libc.unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS) != 0:
        _fail("unshare")
    init = os.fork()
    if init == 0:
        _guarded(_run_init, cfg, code)
    _close_channel(cfg)
    _, st = os.waitpid(init, 0)
    os._exit(_status(st))
