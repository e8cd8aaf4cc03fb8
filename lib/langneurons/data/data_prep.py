"""Data prep: build the labelled text sets from the source chosen in params."""

from __future__ import annotations

from ..run import paths
from ..run.params import Params
from .released_data import sense_dir
from .textsets import TextSets, load_bundled, load_official


def build_text_sets(p: Params) -> TextSets:
    """official = the released sets exactly; hub = rebuilt from PAWS-X/FLORES-200; bundled = offline
    corpus; files = your own <code>.txt files, any language."""
    if p.data.source == "official":
        return load_official(sense_dir(p), p.languages)
    if p.data.source == "hub":
        from .hub_data import build_hub_sets  # imports `datasets` only when needed

        return build_hub_sets(p.data.hub, p.languages)
    if p.data.source == "files":
        from .files_source import load_files

        f = p.data.files
        return load_files(paths.resolve(f.path), p.languages, f.n_positive, f.n_negative_per_language, f.seed)
    b = p.data.bundled
    return load_bundled(p.languages, b.n_positive, b.n_negative_per_language, b.seed)
