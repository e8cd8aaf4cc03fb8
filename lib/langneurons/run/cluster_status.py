"""`make cluster-status` and `make cluster-cancel`: the jobs a LAUNCHER=slurm run submitted, followed again or cancelled.

The record is runs/<profile>/cluster/jobs.json (`make replicate`) or <output_root>/replicate-paper/cluster/jobs.json
(`make replicate-paper`, with --paper).
"""

from __future__ import annotations

import argparse
import sys

from langneurons.base.params import ParamsError, load_params
from langneurons.base.paths import RunLayout
from langneurons.cluster.errors import ClusterError
from langneurons.cluster.slurm import cancel, load_record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("status", "cancel"))
    parser.add_argument("--profile", default="tiny")
    parser.add_argument("--set", default="")
    parser.add_argument("--paper", action="store_true", help="the jobs of make replicate-paper")
    args = parser.parse_args(argv)
    from langneurons.run.cluster_paper import paper_record_path
    from langneurons.run.cluster_run import follow_record, record_path

    try:
        p = load_params(args.profile, args.set.split(), check_files=False)
        record = paper_record_path(p) if args.paper else record_path(RunLayout.of(p).root)
        if args.action == "status":
            return follow_record(record, p.launcher.slurm.poll_s)
        jobs, _ = load_record(record)
        print(f"cancelled {', '.join(cancel(jobs))} (finished parts are kept; the same make command resubmits what is missing)")
    except (ParamsError, ClusterError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
