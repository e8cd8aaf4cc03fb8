"""The six languages of the paper and their codes in the datasets we read."""

LANGUAGES: tuple[str, ...] = ("en", "de", "fr", "es", "zh", "ja")
LANGUAGE_NAMES: dict[str, str] = {
    "en": "English", "de": "German", "fr": "French", "es": "Spanish", "zh": "Chinese", "ja": "Japanese",
}


def check_languages(languages: list[str] | tuple[str, ...]) -> list[str]:
    """Return the languages as a list, or fail naming the unknown code and the valid ones."""
    unknown = [lang for lang in languages if lang not in LANGUAGES]
    if unknown:
        raise ValueError(
            f"unknown language code(s) {unknown}: use a subset of {list(LANGUAGES)}, e.g. languages=de,ja"
        )
    if len(set(languages)) != len(languages):
        raise ValueError(f"languages {list(languages)} has duplicates: list each language once")
    if not languages:
        raise ValueError("languages is empty: name at least one of " + ",".join(LANGUAGES))
    return list(languages)
