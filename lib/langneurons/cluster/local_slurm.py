"""A real Slurm cluster of one or several nodes on this host, for trying `LAUNCHER=slurm` and for the tests.

Nothing here is a mock: it starts Debian's `munged`, `slurmctld` and one `slurmd` per node (Slurm
runs several slurmd on one host when each has its own name, port and spool folder), with every file
in one folder and a `slurm.conf` that `SLURM_CONF` points every Slurm command at. Needs root and the
packages `slurmctld slurmd slurm-client munge` (docs/cluster.md). On a real cluster you need none of
this: its own Slurm is used as it is.

    python -m langneurons.cluster.local_slurm start --root /tmp/ln-slurm --nodes 3   # prints: export SLURM_CONF=...
    python -m langneurons.cluster.local_slurm stop --root /tmp/ln-slurm

`private` (optional) is a folder that the nodes see empty: each slurmd runs in a mount namespace of
its own with a fresh tmpfs over it, so a job on a node cannot read what this host writes there. It
stands in for a filesystem that the submitting machine has and the nodes do not.

Only the daemons started here are stopped, by the process ids recorded in the folder.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel")
PACKAGES = "slurmctld slurmd slurm-client munge"
STATE_FILE = "cluster.json"


class ClusterStartError(RuntimeError):
    """The daemons did not come up; the message names the log to read."""


@dataclass(frozen=True)
class LocalCluster:
    root: Path
    conf: Path
    nodes: tuple[str, ...]
    partition: str
    pids: dict[str, int]  # daemon name -> process id (munged, slurmctld, slurmd-n1, ...)
    munge_dir: Path  # munged's socket, pid and log (removed by stop)

    @property
    def env(self) -> dict[str, str]:
        """What a process needs in its environment to talk to this cluster."""
        return {"SLURM_CONF": str(self.conf)}


def missing_binaries() -> list[str]:
    return [b for b in BINARIES if shutil.which(b) is None and not Path(f"/usr/sbin/{b}").exists()]


def _binary(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _conf_text(root: Path, host: str, nodes: tuple[str, ...], ports: list[int], cpus: int, mem_mib: int,
               partition: str, munge_socket: Path) -> str:
    lines = [
        "ClusterName=langneurons", f"SlurmctldHost={host}", "SlurmUser=root", "SlurmdUser=root",
        "AuthType=auth/munge", f"AuthInfo=socket={munge_socket}", "CredType=cred/munge",
        f"SlurmctldPort={ports[0]}", f"StateSaveLocation={root}/state", f"SlurmdSpoolDir={root}/spool-%n",
        f"SlurmctldPidFile={root}/slurmctld.pid", f"SlurmdPidFile={root}/slurmd-%n.pid",
        f"SlurmctldLogFile={root}/slurmctld.log", f"SlurmdLogFile={root}/slurmd-%n.log",
        "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "JobAcctGatherType=jobacct_gather/none",
        "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core_Memory", "ReturnToService=2", "MpiDefault=none",
        "MinJobAge=3600",  # keep finished jobs in scontrol for an hour: this cluster has no accounting (sacct)
        "SchedulerParameters=sched_interval=1,bf_interval=1", "SlurmctldDebug=info", "SlurmdDebug=info",
    ]
    for node, port in zip(nodes, ports[1:]):
        lines.append(f"NodeName={node} NodeHostname={host} Port={port} CPUs={cpus} RealMemory={mem_mib} State=UNKNOWN")
    lines.append(f"PartitionName={partition} Nodes={','.join(nodes)} Default=YES MaxTime=INFINITE State=UP")
    return "\n".join(lines) + "\n"


def _wait_for(check, seconds: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise ClusterStartError(f"{what} did not come up within {seconds:.0f} s: read {log}")


def _pid_from(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def start(root: Path, n_nodes: int = 1, partition: str = "debug", private: Path | None = None,
          mem_mib: int | None = None) -> LocalCluster:
    """Start munged, slurmctld and `n_nodes` slurmd on this host; every file under `root`."""
    if os.geteuid() != 0:
        raise ClusterStartError("starting a Slurm cluster on this host needs root (slurmd runs jobs as their user)")
    missing = missing_binaries()
    if missing:
        raise ClusterStartError(f"missing {', '.join(missing)}: apt-get install -y --no-install-recommends {PACKAGES}")
    root = root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    (root / "state").mkdir(exist_ok=True)
    host = socket.gethostname().split(".")[0]
    nodes = tuple(f"n{i}" for i in range(1, n_nodes + 1))
    cpus = max(1, (os.cpu_count() or 1) // n_nodes)  # the host's cores shared out: no node promises more than it has
    if mem_mib is None:  # below the machine's memory, shared by the nodes (nothing enforces it: TaskPlugin none)
        mem_mib = int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20 * 0.8)
    pids: dict[str, int] = {}

    # munge: a daemon of our own on a socket of our own, run as the munge user with the package's key
    # in a folder of its own under /tmp: the munge user must reach it, and `root` may sit under a private folder
    munge_dir = Path(tempfile.mkdtemp(prefix="langneurons-munge-"))
    shutil.chown(munge_dir, "munge", "munge")
    os.chmod(munge_dir, 0o755)  # munged: the socket folder must be searchable by all
    munge_socket = munge_dir / "munge.socket"
    subprocess.run(["runuser", "-u", "munge", "--", _binary("munged"), f"--socket={munge_socket}",
                    f"--pid-file={munge_dir}/munged.pid", f"--log-file={munge_dir}/munged.log",
                    f"--seed-file={munge_dir}/munged.seed"], check=True, capture_output=True, timeout=30)
    _wait_for(lambda: _pid_from(munge_dir / "munged.pid") is not None, 10, "munged", munge_dir / "munged.log")
    pids["munged"] = _pid_from(munge_dir / "munged.pid") or 0

    conf = root / "slurm.conf"
    conf.write_text(_conf_text(root, host, nodes, _free_ports(1 + n_nodes), cpus, mem_mib, partition, munge_socket))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    cluster = LocalCluster(root, conf, nodes, partition, pids, munge_dir)
    _save(cluster)  # now, so that stop() finds munged even if slurm fails to start
    subprocess.run([_binary("slurmctld"), "-f", str(conf)], check=True, env=env, capture_output=True, timeout=30)
    _wait_for(lambda: _pid_from(root / "slurmctld.pid") is not None, 15, "slurmctld", root / "slurmctld.log")
    pids["slurmctld"] = _pid_from(root / "slurmctld.pid") or 0
    _save(cluster)
    if private is not None:
        private.mkdir(parents=True, exist_ok=True)
    for node in nodes:
        cmd = [_binary("slurmd"), "-f", str(conf), "-N", node]
        if private is not None:  # the node's own mount namespace: an empty tmpfs over `private`
            inner = f"mount -t tmpfs tmpfs {private} && exec {' '.join(cmd)}"
            cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c", inner]
        subprocess.run(cmd, check=True, env=env, capture_output=True, timeout=30)
        _wait_for(lambda n=node: _pid_from(root / f"slurmd-{n}.pid") is not None, 15, f"slurmd {node}",
                  root / f"slurmd-{node}.log")
        pids[f"slurmd-{node}"] = _pid_from(root / f"slurmd-{node}.pid") or 0
        _save(cluster)

    def all_idle() -> bool:
        out = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %t"], env=env, capture_output=True, text=True).stdout
        states = dict(line.split() for line in out.splitlines() if line.strip())
        return all(states.get(n, "").startswith("idle") for n in nodes)

    _wait_for(all_idle, 30, "the nodes (sinfo: idle)", root / "slurmctld.log")
    return cluster


def _save(cluster: LocalCluster) -> None:
    data = {**asdict(cluster), "root": str(cluster.root), "conf": str(cluster.conf), "munge_dir": str(cluster.munge_dir)}
    (cluster.root / STATE_FILE).write_text(json.dumps(data, indent=2))


def load(root: Path) -> LocalCluster:
    data = json.loads((root / STATE_FILE).read_text())
    return LocalCluster(Path(data["root"]), Path(data["conf"]), tuple(data["nodes"]), data["partition"], data["pids"],
                        Path(data["munge_dir"]))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _terminate(pids: list[int], timeout: float) -> None:
    """SIGTERM to all of them at once, then SIGKILL to any still running after `timeout` seconds."""
    for pid in pids:
        try:
            os.kill(pid, 15)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in pids:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass


def stop(cluster: LocalCluster, timeout: float = 10) -> None:
    """Stop the daemons this module started (by their recorded pids): the slurmd, then slurmctld, then munged."""
    _terminate([pid for name, pid in cluster.pids.items() if name.startswith("slurmd") and pid], timeout)
    for name in ("slurmctld", "munged"):
        if cluster.pids.get(name):
            _terminate([cluster.pids[name]], timeout)
    shutil.rmtree(cluster.munge_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("start", "stop"))
    parser.add_argument("--root", default="/tmp/langneurons-slurm", help="folder for the cluster's files")
    parser.add_argument("--nodes", type=int, default=1, help="slurmd daemons (nodes n1..nK) on this host")
    args = parser.parse_args(argv)
    root = Path(args.root)
    try:
        if args.action == "start":
            cluster = start(root, args.nodes)
            print(f"started Slurm on this host: nodes {','.join(cluster.nodes)}, partition {cluster.partition}")
            print(f"export SLURM_CONF={cluster.conf}")
        else:
            stop(load(root))
            print(f"stopped the daemons recorded in {root / STATE_FILE}")
    except (ClusterStartError, OSError, subprocess.SubprocessError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
