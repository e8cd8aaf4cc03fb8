"""`make replicate`: resolve params, then run the notebooks in order with papermill.

Params are checked before anything runs. The resolved params go to runs/<profile>/params.yaml and
are injected into every notebook's `parameters` cell; executed notebooks are kept in
runs/<profile>/notebooks/, each stage's wall time and peak memory in runs/<profile>/logs/.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from langneurons.base import paths
from langneurons.base.paths import RunLayout
from langneurons.run.cache import StageCache, StaleUpstreamError
from langneurons.run.progress import StageOutput
from langneurons.run.check_figures import check
from langneurons.run.check_figures import summary as figures_summary
from langneurons.base.params import Params, ParamsError, load_params, save_params
from langneurons.run.preflight import check_before_running, drop_stages_with_nothing_to_do
from langneurons.data.release_files import ReleaseError
from langneurons.data.profile_data import needed_files, release_for
from langneurons.run.report import write_report
from langneurons.run.stagelog import Stage, stage_table
from langneurons.run.stages import BY_NAME, NAMES, SENTENCE_SETS, TRANSLATION_PAIRS, derived_are_current, reading, runs_with

# The papermill chain, in order: each notebook reads what the ones before it wrote (see cache.SPECS).
STAGES: tuple[str, ...] = NAMES


# The kernel warns on every start that it talks to papermill over TCP on localhost without
# encryption; nothing leaves the machine, so it only hides the progress: log kernel errors only.
KERNEL_ARGS = ["--IPKernelApp.log_level=ERROR"]


class StageError(RuntimeError):
    """A notebook failed; the message is one line naming the stage and the cause."""


INTERRUPTED = "interrupted: finished stages are kept; run the same command again to resume"


class Interrupted(RuntimeError):
    """Ctrl-C during a stage; the message says what is kept and how to resume."""


def kernel_manager_logging_to(path: Path) -> type:
    """A kernel manager class whose kernel writes its own stderr to `path` instead of the terminal.

    The kernel runs in its own session, so Ctrl-C reaches only this process; when it stops, the
    kernel is shut down, and anything it prints while dying (a wall of zmq tracebacks) goes to the
    file rather than under the one line that says what is kept."""
    from jupyter_client.manager import AsyncKernelManager

    class StageKernelManager(AsyncKernelManager):
        async def _async_start_kernel(self, **kw):  # type: ignore[override]
            path.parent.mkdir(parents=True, exist_ok=True)
            kw.setdefault("stderr", open(path, "ab"))  # noqa: SIM115 (the kernel process owns it)
            return await super()._async_start_kernel(**kw)

        start_kernel = _async_start_kernel

    return StageKernelManager


def reused_without_kernel(stage: str, p: Params, layout: RunLayout) -> bool:
    """A stage whose outputs match their key and checksums, and whose figures and tables are the ones it
    last derived from them, has nothing to do: log it as reused and start no kernel (a cached rerun takes
    seconds). The notebook would reach the same decision; an unfinished or altered upstream stops here."""
    if p.force:
        return False
    try:
        cache = StageCache(stage, p, layout, announce=False)
    except StaleUpstreamError as e:
        raise StageError(f"{stage} failed: StaleUpstreamError: {e}") from e
    if not (cache.hit and derived_are_current(stage, layout.root, layout.figures)):
        return False
    Stage(stage, layout.root, layout.figures, reused=True).finish(notebook=False)
    print(f"[{time.strftime('%H:%M:%S')}] {p.profile} {stage}: reused — {cache.reason}; figures unchanged (no kernel started)",
          flush=True)
    return True


def run_stages(profile: str, overrides: list[str], stages: tuple[str, ...] = STAGES, kernel: str = "python3") -> RunLayout:
    p = load_params(profile, overrides)
    layout = RunLayout.of(p)
    save_params(p, layout.params_file)
    skipped = [s for s in stages if not runs_with(s, p)]
    for stage in skipped:
        print(f"skipping {stage}: it studies {BY_NAME[stage].method.upper()}'s units and selection.method={p.selection.method}")
    stages = drop_stages_with_nothing_to_do(p, tuple(s for s in stages if s not in skipped))
    stages = fetch_released_files(p, stages)
    os.environ.setdefault("TQDM_MININTERVAL", "10")  # keeps progress bars from flooding saved notebooks
    checked = False
    for i, stage in enumerate(stages):
        if reused_without_kernel(stage, p, layout):
            continue
        if not checked:  # before the first notebook computes: what the params alone cannot tell, then the cost
            check_before_running(p, stages[i:])
            print_plan(p)
            checked = True
        run_notebook(stage, p, profile, overrides, layout, kernel)
    print(f"report: {write_report(p, layout)}")
    print(stage_table(layout.root).to_string(index=False))
    print(figures_summary(check(layout.figures, p.scoring.n_per_side, layout.root)))  # make check-figures, in short
    return layout


def run_notebook(stage: str, p: Params, profile: str, overrides: list[str], layout: RunLayout, kernel: str) -> None:
    """Execute notebooks/<stage>.ipynb with papermill into runs/<profile>/notebooks/, its output live in the terminal,
    in a Jupyter kernel of its own or in this process (param notebook_engine)."""
    import papermill  # heavy import: only when a notebook runs

    source = paths.NOTEBOOKS_DIR / f"{stage}.ipynb"
    target = layout.notebooks / f"{stage}.ipynb"
    target.parent.mkdir(parents=True, exist_ok=True)
    print(f"[{time.strftime('%H:%M:%S')}] {p.profile} {stage} -> {target}", flush=True)
    # the kernel's prints and progress bars, live in the terminal (one buffer per stream: their lines do not mix)
    live, live_err = StageOutput(f"{p.profile} {stage}", sys.stdout), StageOutput(f"{p.profile} {stage}", sys.stdout)
    if p.notebook_engine == "inprocess":  # in this process (inprocess.py); the same outputs, no kernel start
        from langneurons.run.inprocess import NAME

        engine = {"engine_name": NAME}
    else:  # a Jupyter kernel of its own, which writes its own stderr to logs/<stage>.kernel.log
        engine = {"kernel_name": kernel, "extra_arguments": KERNEL_ARGS,
                  "kernel_manager_class": kernel_manager_logging_to(layout.root / "logs" / f"{stage}.kernel.log")}
    try:
        papermill.execute_notebook(
            str(source), str(target), cwd=str(paths.NOTEBOOKS_DIR), progress_bar=False,
            parameters={"profile": profile, "overrides": list(overrides), "params": p.to_dict()},
            stdout_file=live, stderr_file=live_err, **engine,
        )
        live.close()
        live_err.close()
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted during {p.profile} {stage}: finished stages and the work saved so far are kept "
                          f"in {layout.root}; run the same command again to resume") from None
    except papermill.PapermillExecutionError as e:
        raise StageError(f"{stage} failed: {e.ename}: {e.evalue.strip()} (full traceback: {target})") from e
    except Exception as e:  # the kernel died (killed, out of memory) or could not start
        raise StageError(f"{stage} stopped: {type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''} "
                         f"(partial notebook: {target}). Finished work is kept: rerun to resume") from e


def fetch_released_files(p: Params, stages: tuple[str, ...]) -> tuple[str, ...]:
    """Fetch (or find verified in the cache) the released files the stages read, before any stage runs.

    Translation pairs that cannot be fetched skip the translation stage when the profile allows it
    (translation.skip_if_missing: the tiny default offline); anything else stops here in one line.
    """
    needed = needed_files(p)
    if set(stages) & set(reading(SENTENCE_SETS)) and SENTENCE_SETS in needed:
        release_for(p).fetch_all(needed[SENTENCE_SETS])
    translating = set(stages) & set(reading(TRANSLATION_PAIRS))
    if translating and TRANSLATION_PAIRS in needed:
        try:
            release_for(p).fetch_all(needed[TRANSLATION_PAIRS])
        except ReleaseError as e:
            if not p.translation.skip_if_missing:
                raise
            print(f"skipping {', '.join(sorted(translating))}: the released translation pairs are not available ({e})")
            stages = tuple(s for s in stages if s not in translating)
    return stages


def print_plan(p: Params) -> None:
    """The cost of the run in one paragraph (make plan prints it in full), before anything starts."""
    from langneurons.run.plan import PlanError, make_plan, plan_paragraph

    try:
        print(plan_paragraph(make_plan(p)), flush=True)
    except PlanError as e:
        print(f"(no plan: {e})", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="tiny", help="a file in params/profiles/ (without .yaml)")
    parser.add_argument("--set", default="", help='overrides, e.g. "scoring.n_per_side=500 languages=de,ja"')
    parser.add_argument("--stages", default=",".join(STAGES), help="comma-separated notebook names to run")
    parser.add_argument("--check", action="store_true", help="only resolve and check the params, then print them")
    args = parser.parse_args(argv)
    overrides = args.set.split()
    try:
        if args.check:
            import yaml

            print(yaml.safe_dump(load_params(args.profile, overrides).to_dict(), sort_keys=False, allow_unicode=True))
            return 0
        unknown = [s for s in args.stages.split(",") if s not in STAGES]
        if unknown:
            raise ParamsError(f"unknown stage(s) {unknown}: choose from {', '.join(STAGES)}")
        run_stages(args.profile, overrides, tuple(args.stages.split(",")))
    except (ParamsError, ReleaseError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except StageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except (Interrupted, KeyboardInterrupt) as e:
        print(str(e) or INTERRUPTED, file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
