"""Is a folder the same on the cluster's nodes as here? A job on the cluster reads a token written here.

The run folder, the stage cache inside it, the figures and the user cache (released files, the
float copy of a GGUF model) must be on a filesystem every node sees: jobs read what earlier jobs
and the submitter wrote. A folder on this machine's local disk passes a test run on this machine
and fails silently on a cluster, so the check runs on a node, before any stage is submitted.
"""

from __future__ import annotations

from langneurons.cluster.errors import ClusterError

import shlex
import subprocess
import uuid
from pathlib import Path

TOKEN_PREFIX = ".langneurons-shared-"
FIRST_CODE = 10  # the check job exits 10 + i when it cannot read token i


class NotSharedError(ClusterError):
    """A folder the jobs need is not visible from the cluster's nodes; the message names the param."""


def write_tokens(folders: dict[str, Path]) -> dict[str, tuple[str, str]]:
    """A fresh token file in each folder (created if need be): what -> (token file, token)."""
    out = {}
    for what, folder in folders.items():
        folder.mkdir(parents=True, exist_ok=True)
        token = uuid.uuid4().hex
        path = folder / f"{TOKEN_PREFIX}{token}"
        path.write_text(token)
        out[what] = (str(path), token)
    return out


def check_on_a_node(tokens: dict[str, tuple[str, str]], sbatch_options: list[str], timeout_s: float) -> None:
    """One small job reads the tokens back; its exit code says which one it missed.

    It runs through `sbatch --wait` with its output thrown away, so that its answer comes back even
    when nothing the node writes reaches this machine (the case being checked)."""
    names = list(tokens)
    checks = " && ".join(f'{{ [ "$(cat {shlex.quote(path)} 2>/dev/null)" = {token} ] || exit {FIRST_CODE + i}; }}'
                         for i, (path, token) in enumerate(tokens.values()))
    cmd = ["sbatch", "--wait", "--parsable", "--job-name=ln-check-shared", "--output=/dev/null", "--time=5",
           "--mem=100M", "--cpus-per-task=1", *sbatch_options, f"--wrap={checks} && exit 0"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except FileNotFoundError as e:
        raise ClusterError("sbatch not found: LAUNCHER=slurm needs Slurm's client commands on this machine") from e
    except subprocess.TimeoutExpired as e:
        job = (e.stdout or b"").decode().strip() if isinstance(e.stdout, bytes) else (e.stdout or "").strip()
        if job:
            subprocess.run(["scancel", job.split(";")[0]], capture_output=True)
        raise ClusterError(f"the job checking the shared folders did not end within {timeout_s:.0f} s (queued?): raise "
                           "launcher.slurm.check_timeout_s, or set launcher.slurm.check_shared=false") from e
    code = out.returncode
    if code == 0:
        return
    if FIRST_CODE <= code < FIRST_CODE + len(names):
        what = names[code - FIRST_CODE]
        raise NotSharedError(f"a job on the cluster does not see what this machine wrote in {what}: "
                             f"{Path(tokens[what][0]).parent}. Put it on a filesystem every node mounts: change the "
                             "param (or variable) named, e.g. SET=\"output_root=/shared/me/runs figures_root=/shared/me/figures\"")
    detail = (out.stderr or out.stdout).strip().splitlines()
    raise ClusterError(f"the job checking the shared folders failed (sbatch exit {code}: {detail[-1] if detail else ''}): "
                       "check launcher.slurm.partition, account and qos")


def remove_tokens(tokens: dict[str, tuple[str, str]]) -> None:
    for path, _ in tokens.values():
        Path(path).unlink(missing_ok=True)
