"""A real one-node Slurm cluster (munged + slurmctld + slurmd) in a private directory, for tests and bench.

Everything it starts uses its own ports, sockets, spool and state directories, so it neither needs nor
touches a system-wide Slurm or munge, and two clusters can run side by side on one host. ``stop()`` cancels
every job, stops the daemons and kills any process that still carries the cluster's ``SLURM_CONF`` (a
job's slurmstepd or its children), so no process outlives the session.

Needs root (slurmd runs jobs as their owner) and Debian's ``slurm-wlm`` and ``munge`` packages;
:func:`unavailable` says why a cluster cannot start here, or None.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel", "srun")

SLURM_CONF = """\
ClusterName=cascadec-test
SlurmctldHost={host}
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={dir}/munge/munge.socket
StateSaveLocation={dir}/state
SlurmdSpoolDir={dir}/spool/%n
SlurmctldPidFile={dir}/slurmctld.pid
SlurmdPidFile={dir}/slurmd.pid
SlurmctldLogFile={dir}/slurmctld.log
SlurmdLogFile={dir}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SwitchType=switch/none
MpiDefault=none
JobRequeue=1
ReturnToService=2
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
KillWait={kill_wait}
MinJobAge=600
MessageTimeout=10
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
SlurmctldParameters=enable_configless
NodeName={host} CPUs={cpus} RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
"""


def unavailable() -> str | None:
    """Why a test cluster cannot start on this host (missing packages, not root), or None."""
    if os.geteuid() != 0:
        return "a test Slurm cluster needs root (slurmd runs jobs as their owner)"
    missing = [b for b in BINARIES if shutil.which(b) is None]
    if missing:
        return (f"Slurm is not installed ({', '.join(missing)} missing): "
                "`apt-get install -y slurm-wlm munge` (as .ci/run does)")
    try:
        pwd.getpwnam("munge")
    except KeyError:
        return "the `munge` user does not exist (install the `munge` package)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MiniCluster:
    """One running cluster; use :func:`start`. ``env`` is the environment a client needs (``SLURM_CONF``)."""

    def __init__(self, root: Path, kill_wait: int) -> None:
        self.root = root
        self.kill_wait = kill_wait
        self.conf = root / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self.procs: list[subprocess.Popen] = []

    # -------------------------------------------------------------- start

    def _start_munge(self) -> None:
        munge = pwd.getpwnam("munge")
        mdir = self.root / "munge"
        mdir.mkdir()
        mdir.chmod(0o755)  # munged wants its socket's folder executable by all
        key = mdir / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        for path in (mdir, key):
            os.chown(path, munge.pw_uid, munge.pw_gid)
        cmd = ["munged", "--foreground", f"--key-file={key}", f"--socket={mdir}/munge.socket",
               f"--pid-file={mdir}/munged.pid", f"--log-file={mdir}/munged.log", f"--seed-file={mdir}/seed"]
        self.procs.append(subprocess.Popen(cmd, user=munge.pw_uid, group=munge.pw_gid, start_new_session=True,
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        self._wait(lambda: (mdir / "munge.socket").exists(), "munged did not create its socket", 20)

    def start(self, cpus: int) -> None:
        host = socket.gethostname()
        for sub in ("state", "spool"):
            (self.root / sub).mkdir()
        self.root.chmod(0o755)  # munged (as `munge`) must reach its own folder inside
        self._start_munge()
        self.conf.write_text(SLURM_CONF.format(host=host, ctld_port=_free_port(), slurmd_port=_free_port(),
                                               dir=self.root, cpus=cpus, kill_wait=self.kill_wait))
        for daemon in (["slurmctld", "-D", "-i"], ["slurmd", "-D"]):
            self.procs.append(subprocess.Popen([*daemon, "-f", str(self.conf)], env=self.env,
                                               start_new_session=True, stdout=subprocess.DEVNULL,
                                               stderr=subprocess.DEVNULL))
        self._wait(self._node_idle, f"the node did not become idle; see {self.root}/slurmctld.log", 60)

    def _node_idle(self) -> bool:
        for proc in self.procs:
            if proc.poll() is not None:
                raise RuntimeError(f"`{' '.join(map(str, proc.args))}` exited with {proc.returncode}; "
                                   f"see the logs in {self.root}")
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], env=self.env, capture_output=True, text=True)
        return out.returncode == 0 and out.stdout.strip() == "idle"

    @staticmethod
    def _wait(ready, message: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return
            time.sleep(0.2)
        raise RuntimeError(message)

    # -------------------------------------------------------------- use

    def run(self, *args: str, check: bool = True) -> str:
        """Run a Slurm client command against this cluster; returns its stdout."""
        out = subprocess.run(list(args), env=self.env, capture_output=True, text=True)
        if check and out.returncode != 0:
            raise RuntimeError(f"`{' '.join(args)}` failed ({out.returncode}): {out.stderr.strip()}")
        return out.stdout

    def queue(self) -> list[str]:
        """Job ids in the queue (pending, running, completing)."""
        return self.run("squeue", "-h", "-o", "%i").split()

    def drain(self, timeout: float = 60) -> None:
        """Cancel every job and wait until the queue is empty."""
        if self.queue():
            self.run("scancel", "--full", "--user=root", check=False)
        self._wait(lambda: not self.queue(), "jobs did not leave the queue", timeout)

    # -------------------------------------------------------------- stop

    def stop(self) -> None:
        """Cancel the jobs, stop the daemons, kill any process left with this cluster's SLURM_CONF."""
        if len(self.procs) == 3:  # the daemons started: their jobs are cancelled first
            try:
                self.drain(timeout=self.kill_wait + 30)
            except RuntimeError:
                pass
        for proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        for pid in self.leftovers():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.root, ignore_errors=True)

    def leftovers(self) -> list[int]:
        """Processes whose environment or command line names this cluster's directory."""
        marker = str(self.root).encode()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                blob = (entry / "environ").read_bytes() + (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if marker in blob:
                found.append(int(entry.name))
        return found


def start(kill_wait: int = 30, cpus: int | None = None) -> MiniCluster:
    """Start a cluster in a fresh directory under the system temp dir (readable by the ``munge`` user)."""
    root = Path(tempfile.mkdtemp(prefix="cascadec-slurm-"))
    cluster = MiniCluster(root, kill_wait)
    try:
        cluster.start(cpus or os.cpu_count() or 1)
    except BaseException:
        cluster.stop()
        raise
    return cluster
