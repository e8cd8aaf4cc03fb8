"""`make replicate-paper`: every profile of `paper.profiles` (or PROFILES) in turn, then the multi-model figures.

Each profile runs through the ordinary cached, resumable pipeline (`make replicate PROFILE=...`),
so after an interruption the same command continues where it stopped, and a finished profile costs
seconds. A profile that fails (out of memory, a gated model without a login, a bad path) is
reported and the next one runs. At the end: paper_figures/all/ (see all_profiles.py), a summary
line per profile (done | reused | failed: <one line>) and exit status 0 only when all succeeded.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass

from langneurons.base import paths
from langneurons.run.all_profiles import write_all
from langneurons.base.params import ParamsError, load_params, profile_name
from langneurons.run.pipeline import INTERRUPTED, STAGES, Interrupted, run_stages
from langneurons.run.stagelog import stage_records


@dataclass(frozen=True)
class ProfileResult:
    profile: str  # as given (a name or a .yaml path)
    status: str  # done | reused | failed
    detail: str = ""  # the failure, in one line
    seconds: float = 0.0

    @property
    def outcome(self) -> str:
        return f"failed: {self.detail}" if self.status == "failed" else self.status

    def line(self) -> str:
        return f"{profile_name(self.profile):<16} {self.outcome:<10} {self.seconds:8.1f} s"


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:300]


def run_profile(profile: str, overrides: list[str], stages: tuple[str, ...]) -> ProfileResult:
    """Run one profile; a failure becomes a result, not an exception (Ctrl-C still stops everything)."""
    started = time.time()
    try:
        layout = run_stages(profile, overrides, stages)
    except (Interrupted, KeyboardInterrupt):
        raise
    except Exception as e:  # anything a profile can fail with: params, download, a stage, out of memory
        return ProfileResult(profile, "failed", _one_line(e), time.time() - started)
    ran = [r for r in stage_records(layout.root) if (layout.root / "logs" / f"{r['stage']}.json").stat().st_mtime >= started]
    status = "reused" if ran and all(r.get("reused") for r in ran) else "done"
    return ProfileResult(profile, status, "", time.time() - started)


def replicate_paper(profiles: list[str], overrides: list[str], stages: tuple[str, ...] = STAGES) -> list[ProfileResult]:
    """Every profile in turn, then paper_figures/all/ from whatever has finished."""
    results = []
    for i, profile in enumerate(profiles, 1):
        print(f"=== [{i}/{len(profiles)}] profile {profile_name(profile)}", flush=True)
        results.append(run_profile(profile, overrides, stages))
        print(f"=== {results[-1].line()}", flush=True)
    figures_root = paths.resolve(load_params("tiny", overrides, check_files=False).figures_root)
    out = write_all(profiles, overrides, figures_root, {profile_name(r.profile): r.outcome for r in results})
    print(f"multi-model figures: {out}")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profiles", default="", help="space-separated profile names or .yaml paths (default: paper.profiles)")
    parser.add_argument("--set", default="", help="overrides applied to every profile")
    parser.add_argument("--stages", default=",".join(STAGES))
    args = parser.parse_args(argv)
    overrides = args.set.split()
    try:
        profiles = args.profiles.split() or load_params("tiny", overrides, check_files=False).paper.profiles
        results = replicate_paper(profiles, overrides, tuple(args.stages.split(",")))
    except ParamsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (Interrupted, KeyboardInterrupt) as e:
        print(str(e) or INTERRUPTED, file=sys.stderr)
        return 130
    print("\nprofile          status       time")
    for r in results:
        print(r.line())
    failed = [r for r in results if r.status == "failed"]
    print(f"{len(results) - len(failed)} of {len(results)} profiles succeeded")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
