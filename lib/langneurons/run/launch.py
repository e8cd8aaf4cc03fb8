"""Where the stages run: `make replicate`, `make replicate-paper` and `make plan` with LAUNCHER=local or slurm.

launcher.name=local (the default) hands over to the local modules unchanged (pipeline, replicate_paper,
plan); launcher.name=slurm (`make LAUNCHER=slurm SHARDS=K`) to the cluster ones (cluster_run,
cluster_paper, cluster_plan; docs/cluster.md). The arguments are the local modules' own.
"""

from __future__ import annotations

import argparse
import sys

from langneurons.base.params import ParamsError, load_params
from langneurons.cluster.errors import ClusterError
from langneurons.data.release_files import ReleaseError


def _launcher(argv: list[str]) -> tuple[str, argparse.Namespace]:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--profile", default="tiny")
    parser.add_argument("--profiles", default="")
    parser.add_argument("--set", default="")
    parser.add_argument("--stages", default="")
    args, _ = parser.parse_known_args(argv)
    return load_params(args.profile, args.set.split(), check_files=False).launcher.name, args


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("replicate", "replicate-paper", "plan"):
        print("usage: python -m langneurons.run.launch replicate|replicate-paper|plan [the module's own arguments]",
              file=sys.stderr)
        return 2
    command, rest = argv[0], argv[1:]
    try:
        launcher, args = _launcher(rest)
    except ParamsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if launcher == "local":
        from langneurons.run import pipeline, plan, replicate_paper

        return {"replicate": pipeline.main, "replicate-paper": replicate_paper.main, "plan": plan.main}[command](rest)
    from langneurons.run.stages import NAMES

    stages = tuple(args.stages.split(",")) if args.stages else NAMES
    overrides = args.set.split()
    try:
        if command == "plan":
            from langneurons.run.cluster_plan import main as plan_main

            return plan_main(args.profile, overrides)
        if command == "replicate":
            from langneurons.run.cluster_run import replicate_on_slurm

            unknown = [s for s in stages if s not in NAMES]
            if unknown:
                raise ParamsError(f"unknown stage(s) {unknown}: choose from {', '.join(NAMES)}")
            return replicate_on_slurm(args.profile, overrides, stages)
        from langneurons.run.cluster_paper import replicate_paper_on_slurm

        profiles = args.profiles.split() or load_params("tiny", overrides, check_files=False).paper.profiles
        return replicate_paper_on_slurm(profiles, overrides, stages)
    except (ParamsError, ReleaseError, ClusterError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted before the jobs were followed: make cluster-status shows what was submitted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
