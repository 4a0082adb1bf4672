"""The file tree an execution sees at the namespaces level: only what the interpreter needs, read-only.

`plan(packages)` lists the steps `_boot._build_fs` applies to an empty tmpfs before it becomes the root:

- the system directories the interpreter links against (`/usr`; `/bin`, `/lib`, `/lib64`, `/sbin` as on the
  host: symlinks recreated, real directories bound) and `/etc/ld.so.cache`, read-only;
- the standard library, the interpreter binary and `libpython`, read-only, at their host paths;
- every site-packages directory of this interpreter that lies inside a bound directory covered by an empty
  read-only tmpfs, then the allow-listed packages (top-level import names, e.g. `numpy`) bound back into it;
- `/dev/null`, `/dev/zero`, `/dev/full`, `/dev/random`, `/dev/urandom`; private tmpfs mounts for `/tmp`,
  `/var/tmp`, `/dev/shm` and `/run`.

Nothing else of the host exists inside: not the working directory, the run directory, the data, `/home`,
`/root`, the host's `/tmp` or `/run`, or any Unix socket of the host.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import site
import sys
import sysconfig
from functools import cache

_SYSTEM = ("/usr", "/bin", "/lib", "/lib64", "/lib32", "/libx32", "/sbin")
_DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")
_PRIVATE = (("/tmp", "1777"), ("/var/tmp", "1777"), ("/dev/shm", "1777"), ("/run", "755"))


class UnknownPackage(ValueError):
    """An allow-listed package that this interpreter cannot import."""


def _inside(path: str, roots: list[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def _bind(src: str, dst: str | None = None, *, ro: bool = True) -> dict[str, object]:
    return {"op": "bind", "src": src, "path": dst or src, "kind": "dir" if os.path.isdir(src) else "file",
            "ro": ro}


def package_paths(name: str) -> list[str]:
    """Host paths (package directory or module file, plus a sibling `<name>.libs`) of one importable name.

    Raises:
        UnknownPackage: the name is not importable here.
    """
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError) as err:
        raise UnknownPackage(f"package `{name}` cannot be imported here: {err}") from None
    if spec is None or (spec.origin is None and not spec.submodule_search_locations):
        raise UnknownPackage(f"package `{name}` is not installed for {sys.executable}")
    if spec.origin in ("built-in", "frozen"):
        return []
    paths = [os.path.realpath(p) for p in spec.submodule_search_locations or [spec.origin]]
    libs = [os.path.join(os.path.dirname(p), f"{name}.libs") for p in paths]
    return paths + [p for p in libs if os.path.isdir(p)]


def _system_ops() -> list[dict[str, object]]:
    ops: list[dict[str, object]] = []
    for path in _SYSTEM:
        if os.path.islink(path):
            ops.append({"op": "symlink", "target": os.readlink(path), "path": path})
        elif os.path.isdir(path):
            ops.append(_bind(path))
    if os.path.isfile("/etc/ld.so.cache"):
        ops.append(_bind("/etc/ld.so.cache"))
    return ops


def _python_ops(bound: list[str]) -> list[dict[str, object]]:
    ops: list[dict[str, object]] = []
    paths = sysconfig.get_paths()
    for lib in sorted({os.path.realpath(paths["stdlib"]), os.path.realpath(paths["platstdlib"])}):
        if not _inside(lib, bound):
            ops.append(_bind(lib))
            bound.append(lib)
    real = os.path.realpath(sys.executable)
    if not _inside(real, bound):
        ops.append(_bind(real))
    if sys.executable != real and not _inside(sys.executable, bound):
        ops.append({"op": "symlink", "target": real, "path": sys.executable})
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    for so in sorted(glob.glob(os.path.join(libdir, "libpython*.so*"))):
        if not _inside(so, bound):
            ops.append({"op": "symlink", "target": os.readlink(so), "path": so} if os.path.islink(so) else _bind(so))
    return ops


def _site_dirs() -> list[str]:
    dirs = list(site.getsitepackages()) + [site.getusersitepackages()] + [p for p in sys.path if p]
    return sorted({os.path.realpath(d) for d in dirs if os.path.isdir(d)
                   and os.path.basename(d.rstrip("/")) in ("site-packages", "dist-packages")})


@cache
def plan(packages: tuple[str, ...] = (), tmpfs_size: int = 64 << 20) -> tuple[dict[str, object], ...]:
    """The steps of the new root for an execution that may import `packages` (see the module docstring).

    Raises:
        UnknownPackage: an allow-listed package is not importable by this interpreter.
    """
    ops = _system_ops()
    bound = [str(op["path"]) for op in ops if op["op"] == "bind" and os.path.isdir(str(op["path"]))]
    ops += _python_ops(bound)
    hidden = [d for d in _site_dirs() if _inside(d, bound)]
    ops += [{"op": "tmpfs", "path": d, "mode": "755", "size": 1 << 20} for d in hidden]
    for name in packages:
        ops += [_bind(p) for p in package_paths(name)]
    ops += [{"op": "ro", "path": d} for d in hidden]
    ops += [_bind(dev, ro=False) for dev in _DEVICES if os.path.exists(dev)]
    ops += [{"op": "symlink", "target": f"/proc/self/fd/{i}", "path": f"/dev/{name}"}
            for i, name in enumerate(("stdin", "stdout", "stderr"))]
    ops.append({"op": "symlink", "target": "/proc/self/fd", "path": "/dev/fd"})
    ops += [{"op": "tmpfs", "path": p, "mode": mode, "size": tmpfs_size} for p, mode in _PRIVATE]
    ops.append({"op": "dir", "path": "/proc"})
    return tuple(ops)
