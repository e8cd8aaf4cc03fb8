"""What every notebook does first: resolve its params, say where outputs go, start the stage clock."""

from __future__ import annotations

from typing import Any

from langneurons.run.cache import StageCache
from langneurons.base.paths import RunLayout
from langneurons.base.params import Params, ParamsError, load_params, params_from_dict, save_params, start_read_log
from langneurons.run.stagelog import Stage
from langneurons.run.stages import BY_NAME, runs_with



def setup(stage: str, profile: str, overrides: list[str], params: dict[str, Any]) -> tuple[Params, RunLayout, Stage]:
    """Params injected by `make replicate` (`params`), or resolved here from profile + overrides.

    Opening a notebook by hand, edit `profile`/`overrides` in its parameters cell and run all.
    """
    p = params_from_dict(params) if params else load_params(profile, overrides)
    if not runs_with(stage, p):
        raise ParamsError(f"{stage} studies {BY_NAME[stage].method.upper()}'s units, which selection.method="
                          f"{p.selection.method} does not compute: set selection.method=both")
    layout = RunLayout.of(p)
    if not params:  # `make replicate` has already written the resolved params
        save_params(p, layout.params_file)
    print(f"profile {p.profile}: {p.description}")
    print(f"model {p.model.path or p.model.id} | data {p.data.source} | languages {','.join(p.languages)}")
    print(f"outputs in {layout.root}")
    return p, layout, Stage(stage, layout.root, layout.figures, engine=p.notebook_engine, read_log=start_read_log(p))


def stage_cache(stage: Stage, p: Params, layout: RunLayout) -> StageCache:
    """The stage's cache: says whether its outputs are reused, and records them when computed."""
    cache = StageCache(stage.name, p, layout, force=p.force)
    stage.reused = cache.hit
    return cache
