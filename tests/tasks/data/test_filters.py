"""Every pair filter as a table of cases: a pair, the reasons it must get, and why."""

import typing

import pytest

from tasks import config
from tasks.data import filters, placeholders


def case(src, tgt, reasons, why, **limits):
    return pytest.param(src, tgt, reasons, limits, id=why)


CASES = [
    # empty
    case("The file was saved.", "Die Datei wurde gespeichert.", [], "a good pair passes everything"),
    case("", "Hallo", ["empty"], "an empty source"),
    case("Hello", "", ["empty"], "an empty target"),
    # too_short
    case("'", "«", ["too_short"], "one character is not a sentence"),
    case("OK", "OK", ["identical"], "two characters are enough, but untranslated"),
    case("Quit", "Beenden", ["too_short"], "fewer words than min_tokens", min_tokens=2),
    # too_long
    case("x" * 1001, "y" * 1001, ["too_long"], "longer than max_chars"),
    case("word " * 30, "Wort " * 30, ["too_long"], "more words than max_tokens", max_tokens=20),
    case("x" * 1001, "", ["empty", "too_long"], "every reason is reported, not only the first"),
    # length_ratio
    case("Open the file in the editor now.", "Öffnen", ["length_ratio"], "one side far longer: misaligned"),
    case("OK", "In Ordnung", [], "short pairs may differ a lot in length"),
    case("Continue", "Prozessbearbeitung wieder aufnehmen", ["length_ratio"], "exempt only up to 12 characters"),
    # identical
    case("Linux kernel panic", "Linux kernel panic", ["identical"], "copied, not translated"),
    case("42", "42", [], "numbers alone are legitimately identical"),
    case("%s: %s", "%s: %s", [], "placeholders alone are legitimately identical"),
    # wrong_language
    case("The quick brown fox jumps over the lazy dog.", "The quick brown fox jumps over the lazy dog again.",
         ["wrong_language"], "an English target for German"),
    case("Der schnelle braune Fuchs springt über den faulen Hund.", "Der schnelle braune Fuchs springt über den Hund.",
         ["wrong_language"], "a German source for English"),
    case("Cannot open file", "Cannot open file!", [], "too few letters for language ID to judge"),
    case("The quick brown fox jumps over the lazy dog.", "The quick brown fox jumps over the lazy dog again.",
         [], "judged only from langid_min_letters", langid_min_letters=60),
    # numerals
    case("Copy 3 files", "3 Dateien kopieren", [], "the same number, moved"),
    case("1,000.5 bytes", "1.000,5 Bytes", [], "separators are locale: only digits count"),
    case("Wait 5 seconds", "Warte 10 Sekunden", ["numerals"], "a different number"),
    case("Item 2 of 2", "Eintrag 2 von 2 (2)", [], "numbers compared as sets"),
    case("Page 05", "Seite 5", [], "leading zeros do not count"),
    case("Argument %2$s first", "Zuerst Argument %2$s", [], "a placeholder's position is not a number"),
    # placeholders
    case("Cannot open %s", "%s kann nicht geöffnet werden", [], "printf placeholder kept"),
    case("%s: %d files", "%2$d Dateien: %1$s", [], "German may reorder by position"),
    case("%s: %d files", "%d Dateien: %s", ["placeholders"], "swapped without positions: the program crashes"),
    case("Cannot open %s", "Kann nicht öffnen", ["placeholders"], "a placeholder dropped"),
    case("Hello {name}", "Hallo {Name}", ["placeholders"], "a brace field renamed"),
    case("%(count)d items", "%(count)d Einträge", [], "Python named placeholder kept"),
    case("50% done", "50% fertig", [], "a percent sign is not a placeholder"),
    case("Use ${HOME}", "Benutze $HOME", [], "a shell variable is not a placeholder"),
    # markup
    case("Click <b>Save</b>", "Klicken Sie auf <b>Speichern</b>", ["markup"], "HTML tags"),
    case("Tom &amp; Jerry", "Tom &amp; Jerry sind da", ["markup"], "an HTML entity"),
    case("Usage: cp <SOURCE> <DEST>", "Aufruf: cp <QUELLE> <ZIEL>", [], "argument names in usage text are not markup"),
    case("Click <b>Save</b>", "Klicken Sie auf <b>Speichern</b>", [], "off when listed in skip_filters",
         skip_filters=["markup"]),
    # control_chars
    case("\x07timed out waiting for input", "\x07Zu lange keine Eingabe", ["control_chars"], "a bell character"),
    case("Hello\ufeff world", "Hallo Welt", ["control_chars"], "a byte order mark inside text"),
    # encoding
    case("Street", "Stra\ufffde", ["encoding"], "bytes that were not UTF-8"),
    case("Size of file", "DateigrÃ¶ÃŸe", ["encoding"], "UTF-8 read as cp1252 (mojibake)"),
    case("Coffee", "Caf\ud800", ["encoding"], "a lone surrogate from a broken JSON escape"),
    case("Price: 5 €", "Preis: 5 €", [], "real non-ASCII text is fine"),
]


@pytest.mark.parametrize("src, tgt, reasons, limits", CASES)
def test_pair_filters(src, tgt, reasons, limits):
    cfg = config.PipelineParams(**limits)
    found = filters.PairChecker(cfg).reasons(src, tgt)
    assert [reason for reason, _ in found] == reasons
    assert all(detail for _, detail in found)


@pytest.mark.parametrize("src, tgt, detail", [
    ("Wait 5 seconds", "Warte 10 Sekunden", "numbers ['5'] in source, ['10'] in target"),
    ("Cannot open %s", "Kann nicht öffnen", "target lacks %s"),
    ("x" * 1001, "y", "source has 1001 characters > max_chars 1000"),
    ("Hello world, how are you today?", "Hello world, how are you today my friend?",
     "target looks like en (p=0.9"),
])
def test_details_say_what_is_wrong(src, tgt, detail):
    found = filters.PairChecker(config.PipelineParams()).reasons(src, tgt)
    assert any(d.startswith(detail) for _, d in found), found


def test_a_batch_gives_the_same_reasons_as_pair_by_pair():
    checker = filters.PairChecker(config.PipelineParams())
    pairs = [(p.values[0], p.values[1]) for p in CASES if not p.values[3]]
    assert checker.reasons_many(pairs) == [checker.reasons(s, t) for s, t in pairs]


def test_the_config_offers_exactly_the_filters_that_exist():
    assert set(typing.get_args(config.FilterName)) == set(filters.REASONS)


def test_the_readme_documents_every_threshold_with_its_default():
    readme = (config.__file__.rsplit("/tasks/", 1)[0] + "/README.md")
    with open(readme, encoding="utf-8") as fh:
        assert filters.thresholds_table() in fh.read(), "regenerate the README table: filters.thresholds_table()"


@pytest.mark.parametrize("source, target, expected", [
    ("%s %d", "%2$d %1$s", None),
    ("%*d items", "%*d Einträge", None),  # the * takes an argument of its own
    ("%lu bytes", "%u Bytes", "target lacks %lu; target adds %u"),  # the size matters to the program
    ("%<PRIuMAX> bytes", "%<PRIuMAX> Bytes", None),  # gettext's portable size macros
    ("%1 of %2", "%2 von %1", None),  # Qt
    ("{0} and {}", "{} und {0}", None),
    ("100%% done {{literal}}", "100%% fertig {{wörtlich}}", None),  # escapes are not placeholders
    ("%(a)s", "%(b)s", "target lacks %(a)s; target adds %(b)s"),
])
def test_placeholder_keys(source, target, expected):
    assert placeholders.mismatch(source, target) == expected
