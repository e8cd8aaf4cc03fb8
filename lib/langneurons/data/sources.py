"""Data prep: build the labelled text sets from the source chosen in params."""

from __future__ import annotations

from langneurons.base import paths
from langneurons.base.params import Params
from langneurons.data.profile_data import sense_dir
from langneurons.data.corpus import build_bundled_sets
from langneurons.data.textsets import TextSets, load_official


def build_text_sets(p: Params) -> TextSets:
    """official = the released sets exactly; hub = rebuilt from PAWS-X/FLORES-200; bundled = offline
    corpus; files = your own <code>.txt files, any language."""
    if p.data.source == "official":
        return load_official(sense_dir(p), p.languages)
    if p.data.source == "hub":
        from langneurons.data.hub_sets import build_hub_sets  # imports `datasets` only when needed

        return build_hub_sets(p.data.hub, p.languages)
    if p.data.source == "files":
        from langneurons.data.files_source import load_files

        f = p.data.files
        return load_files(paths.resolve(f.path), p.languages, f.n_positive, f.n_negative_per_language, f.seed)
    b = p.data.bundled
    return build_bundled_sets(p.languages, b.n_positive, b.n_negative_per_language, b.seed)
