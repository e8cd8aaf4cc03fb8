"""One pipeline run for every test that only reads a run's outputs (built once per test session).

`make replicate-paper` runs four profiles in turn, written here as YAML files:
- `chain`: the embedded tiny model through all seven notebooks, each in a Jupyter kernel of its
  own (as `make replicate` runs them), on a `files` folder of eight languages (the paper's six,
  Italian, and Toki Pona, which lid.176 cannot identify), with made-up translation pairs and
  held-out texts;
- `broken`: a model folder that does not load (the run reports it and goes on);
- `qwen2` and `mixtral`: tiny random models of a dense family without a BOS token and of a mixture
  of experts, through notebooks 01-05 (AP only; translation has no tasks, so it is skipped).
The last three run their notebooks in the test's own process (notebook_engine: inprocess): a
kernel start and the imports of torch and transformers cost ~10 s a stage, more than the stage.

The resume tests rerun `chain` from scratch in process and compare their bytes with this run's,
which also shows that both engines give the same outputs.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path

import yaml

from conftest import ALL_SENTENCES, write_official_dir, write_translation_dir
from families import save
from langneurons.data.corpus import heldout_sentences, sentences
from langneurons.base.languages import LANGUAGES
from langneurons.base.paths import PROJECT_ROOT

ITALIAN = [
    "Il gatto dorme sul tetto caldo della vecchia casa.", "Ogni mattina prendo il treno per andare al lavoro.",
    "La biblioteca del paese apre alle nove e chiude a mezzogiorno.", "Mia nonna prepara la pasta fresca la domenica.",
    "Il fiume scorre lentamente accanto al vecchio mulino.", "Abbiamo camminato sotto la pioggia fino alla stazione.",
    "Leggere un buon libro rende le serate più brevi.", "I bambini giocano nel cortile dopo la scuola.",
    "Il mercato del sabato è pieno di frutta e verdura.", "Domani andremo al mare se il tempo lo permette.",
    "La cena è pronta, venite a tavola prima che si raffreddi.", "Questa città è famosa per le sue piazze e le sue chiese.",
    "Il medico mi ha consigliato di dormire di più.", "Durante l'inverno le montagne sono coperte di neve.",
    "Ho dimenticato le chiavi di casa sul tavolo della cucina.", "Gli studenti preparano l'esame di storia con impegno.",
]
TOKI_PONA = [
    "soweli lili li lape lon tomo seli.", "mi tawa tomo pali kepeken tomo tawa.", "jan lili li musi lon ma kasi.",
    "telo suli li tawa poka tomo pi pan.", "mi moku e kili lon tenpo suno ale.", "ona li lukin e lipu pona lon tenpo pimeja.",
    "sina wile ala wile moku e pan suwi?", "kon li tawa wawa lon nena suli.", "jan pona mi li toki e toki sin.",
    "waso li kalama musi lon kasi suli.", "mi pilin pona tan ni: sina kama.", "tenpo pimeja la mun li suno lili.",
    "mama mi li pali e moku pona.", "jan ale li kama lon tomo mi lon tenpo ni.", "mi sona ala e nimi pi ma ni.",
    "ilo sona li pali ala tan ni: ona li jo ala e wawa.",
]
ALL8 = [*LANGUAGES, "it", "tok"]


def write_folder(root: Path, per_language: int = 16) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for lang in LANGUAGES:
        (root / f"{lang}.txt").write_text("\n".join(sentences(lang)[:per_language]) + "\n", encoding="utf-8")
    (root / "it.txt").write_text("\n".join(ITALIAN[:per_language]) + "\n\n   \n" + ITALIAN[0] + "\n", encoding="utf-8")
    (root / "tok.txt").write_text("\n".join(TOKI_PONA[:per_language]) + "\n", encoding="utf-8")
    return root


ALL8 = [*LANGUAGES, "it", "tok"]


HELDOUT_EXTRA = {  # held-out texts of the two languages outside the paper's six, never in the sets
    "it": ["Il treno per Milano parte alle sette e mezza.", "La nostra vicina coltiva pomodori sul balcone.",
           "Dopo cena facciamo sempre una passeggiata in centro."],
    "tok": ["mi lukin e waso lon sewi.", "jan lili li moku e kili suwi.", "sina kama tawa tomo mi lon tenpo suno ni."],
}


def write_heldout(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for lang in LANGUAGES:
        (root / f"{lang}.txt").write_text("\n".join(heldout_sentences(lang)[:3]) + "\n", encoding="utf-8")
    for lang, texts in HELDOUT_EXTRA.items():
        (root / f"{lang}.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    return root


TRANSLATION_PAIRS = [("flores200", "de"), ("flores200", "zh"), ("wmt", "de")]
PROFILES = ("chain", "broken", "qwen2", "mixtral")  # the order make replicate-paper runs them in
FINISHED = ("chain", "qwen2", "mixtral")
SMALL = {"activations": {"batch_size": 4}, "generation": {"n_samples": 4, "batch_size": 2, "max_new_tokens": 6},
         "scoring": {"n_per_side": 20}}


def chain_profile(root: Path) -> dict:
    """The embedded model, eight languages from a files folder, every notebook (AP and LAPE, translation)."""
    translation = write_translation_dir(root / "translation", {
        (task, lang): [(ALL_SENTENCES[i], ALL_SENTENCES[i + 4 * (1 + (lang == "zh") * 3)]) for i in range(4)]
        for task, lang in TRANSLATION_PAIRS})
    return {"description": "the embedded tiny model on eight languages, notebooks 01-07", "languages": ALL8,
            "model": {"path": str(PROJECT_ROOT / "models" / "tiny"), "device": "cpu"},
            "data": {"source": "files", "files": {"path": str(write_folder(root / "texts")), "n_positive": 12,
                                                    "n_negative_per_language": 3}},
            **SMALL, "intervention": {"sweep": [1, 1000]},
            "translation": {"official_path": str(translation), "tasks": {"flores200": ["de", "zh"], "wmt": ["de"]},
                            "n_pairs": 3, "max_new_tokens": 5, "batch_size": 2},
            "comparison": {"heldout_path": str(write_heldout(root / "heldout"))}}


def family_profile(root: Path, family: str) -> dict:
    """A tiny random model of `family`, three languages of a made-up official folder, notebooks 01-05."""
    return {"description": f"tiny random {family}", "languages": ["en", "de", "zh"],
            "model": {"path": str(save(family, root / f"model_{family}")), "device": "cpu"},
            "data": {"source": "official", "official_path": str(write_official_dir(root / "sense", n_pos=6, n_neg_per_lang=4))},
            **SMALL, "intervention": {"sweep": [2]}, "selection": {"method": "ap"}, "translation": {"tasks": {}},
            "notebook_engine": "inprocess"}


def write_profiles(root: Path) -> list[Path]:
    root.mkdir(parents=True, exist_ok=True)
    broken = root / "model_broken"
    broken.mkdir(exist_ok=True)
    (broken / "config.json").write_text("{}")  # a model folder that does not load
    profiles = {"chain": chain_profile(root), "qwen2": family_profile(root, "qwen2"),
                "mixtral": family_profile(root, "mixtral")}
    profiles["broken"] = {**profiles["qwen2"], "model": {"path": str(broken), "device": "cpu"}}
    paths = []
    for name in PROFILES:
        path = root / f"{name}.yaml"
        path.write_text(yaml.safe_dump(profiles[name], allow_unicode=True))
        paths.append(path)
    return paths


@dataclass(frozen=True)
class SharedRuns:
    root: Path  # the profiles and their inputs
    runs: Path  # output_root: runs/<profile>/
    figures: Path  # figures_root: paper_figures/<profile>/ and all/
    profiles: dict[str, Path]  # name -> profile YAML
    exit_code: int  # of make replicate-paper (1: the broken profile failed)
    printed: str  # what it printed (the live progress of every stage included)

    def run(self, name: str) -> Path:
        return self.runs / name

    def figs(self, name: str) -> Path:
        return self.figures / name

    @property
    def where(self) -> str:
        return f"output_root={self.runs} figures_root={self.figures}"


def run_shared(root: Path) -> SharedRuns:
    from langneurons.run.replicate_paper import main

    paths = write_profiles(root / "inputs")
    runs, figures = root / "runs", root / "figs"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["--profiles", " ".join(str(p) for p in paths), "--set", f"output_root={runs} figures_root={figures}"])
    return SharedRuns(root, runs, figures, {p.stem: p for p in paths}, code, out.getvalue())
