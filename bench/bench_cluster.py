"""LAUNCHER=slurm against the local run, in one go on this machine: the cost of submitting and assembling.

Starts a Slurm cluster on this host (root; Debian's slurmctld, slurmd, slurm-client, munge), then
runs the same stages twice from the same starting point: `make replicate` locally, and
`make replicate LAUNCHER=slurm SHARDS=K`. It reports both wall times, their ratio, and whether the
stamped outputs of the two runs are the same bytes; the cluster is stopped at the end.

    .venv/bin/python bench/bench_cluster.py                                   # tiny, 01-07, SHARDS=3, one node
    .venv/bin/python bench/bench_cluster.py --profile gemma3-270m --from-run runs/gemma3-270m \\
        --stages 05_intervention --set "generation.n_samples=10"              # Gemma's 05 on finished 01-04

--from-run copies a run folder (its finished stages) into both output roots first, so only the
stages asked for run. Not part of `make test` (it needs root and takes minutes); results in
bench/results/cluster[_<profile>].json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "lib"))

from langneurons.cluster import local_slurm  # noqa: E402
from langneurons.run.cache import stamped_outputs  # noqa: E402

RESULTS = Path(os.environ.get("BENCH_RESULTS_DIR") or ROOT / "bench" / "results")


def replicate(profile: str, overrides: str, stages: str, env: dict[str, str], log: Path) -> float:
    started = time.perf_counter()
    with log.open("w") as out:
        code = subprocess.run([sys.executable, "-m", "langneurons.run.launch", "replicate", "--profile", profile,
                               "--set", overrides, *(["--stages", stages] if stages else [])],
                              stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT).returncode
    if code != 0:
        raise SystemExit(f"the run failed (exit {code}): {log}")
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="tiny")
    parser.add_argument("--shards", type=int, default=3)
    parser.add_argument("--nodes", type=int, default=1)
    parser.add_argument("--cpus-per-job", type=int, default=None, help="launcher.slurm.cpus_per_job (default: the node's CPUs)")
    parser.add_argument("--stages", default="", help="comma-separated stages (default: all)")
    parser.add_argument("--set", default="", help="overrides for both runs")
    parser.add_argument("--from-run", default=None, help="a run folder whose finished stages both runs start from")
    parser.add_argument("--keep", action="store_true", help="keep the two runs' folders")
    args = parser.parse_args()
    if os.geteuid() != 0 or local_slurm.missing_binaries():
        print(f"skipped: needs root and Slurm's packages ({local_slurm.PACKAGES}) to start a cluster on this host")
        return 0

    work = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    name = Path(args.profile).stem
    roots = {kind: work / kind for kind in ("local", "slurm")}
    for root in roots.values():
        if args.from_run:
            shutil.copytree(Path(args.from_run), root / "runs" / name)
    cluster = local_slurm.start(work / "cluster", n_nodes=args.nodes)
    cpus = args.cpus_per_job or max(1, (os.cpu_count() or 1) // args.nodes)
    try:
        env = {**os.environ, **cluster.env}
        times = {}
        for kind, root in roots.items():
            where = f"output_root={root / 'runs'} figures_root={root / 'figs'} {args.set}"
            if kind == "slurm":
                where += f" launcher.name=slurm launcher.shards={args.shards} launcher.slurm.cpus_per_job={cpus}"
            times[kind] = replicate(args.profile, where, args.stages, env, work / f"{kind}.log")
            print(f"{kind}: {times[kind]:.1f} s", flush=True)
    finally:
        local_slurm.stop(cluster)
    local, slurm = (stamped_outputs(roots[k] / "runs" / name) for k in ("local", "slurm"))
    jobs = [json.loads(f.read_text()) for f in sorted((roots["slurm"] / "runs" / name / "logs" / "cluster").glob("*.json"))]
    record = {"profile": args.profile, "stages": args.stages or "all", "set": args.set, "shards": args.shards,
              "nodes": args.nodes, "cpus_per_job": cpus, "nproc": os.cpu_count(),
              "local_s": round(times["local"], 1), "slurm_s": round(times["slurm"], 1),
              "slurm_over_local": round(times["slurm"] / times["local"], 2),
              "same_outputs": local == slurm and bool(local), "outputs_compared": len(local),
              "jobs": [{k: j[k] for k in ("job", "node", "wall_s")} for j in jobs],
              "date": time.strftime("%Y-%m-%d %H:%M")}
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"cluster{'' if name == 'tiny' else '_' + name}.json"
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps({k: v for k, v in record.items() if k != "jobs"}, indent=2))
    print(f"written {out}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if record["same_outputs"] else 1


if __name__ == "__main__":
    sys.exit(main())
