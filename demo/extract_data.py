#!/usr/bin/env python3
"""Rebuild the demo's bundled English-German corpora from pinned Debian packages.

Outputs (under --out, default: demo/data next to this script):

  general/ding.en-de.tsv       General-domain corpus from the Ding dictionary
                               (Debian package trans-de-en): example sentences
                               plus a limited set of short phrase pairs.
  general/<name>.en-de.tsv     General-domain sentences from the German message
                               catalogs of desktop applications, libraries and
                               games outside the demo's domain (GENERAL_PACKAGES),
                               one file per source; none of them shares a
                               sentence with the domain catalogs.
  domain/<name>.de.jsonl       Software-localization corpus: German translations
                               of GNU program messages, one file per package,
                               {"translation": {"en": ..., "de": ...}} per line.
  domain/sed.en-de.tsv         The same for sed, as TSV, so the demo also
                               exercises the TSV reader.

Inputs are the .deb files themselves. Either pass a folder that already holds
them (``--debs DIR``, default .cache/debs; file names do not matter, each file's control data is
read), or let the script fetch the pinned versions with ``apt-get download``
(``--download``, Debian 12 "bookworm" machines only). The .deb archives are read
with the standard library (ar + tar.xz); no dpkg is needed for that.

Only the standard library and polib (pip install polib==1.2.0) are used.
The output is deterministic: running the script twice on the same .deb files
gives byte-identical files.

See demo/data/README.md for provenance, licenses and the extraction rules.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import re
import shutil
import subprocess
import sys
import tarfile
from collections import OrderedDict
from pathlib import Path

import polib

# --------------------------------------------------------------------------
# Pinned inputs (Debian 12 "bookworm" binary packages).
# --------------------------------------------------------------------------

# Ding dictionary data (source package "ding", GPL-2.0-or-later).
DING_PACKAGE = ("trans-de-en", "1.9-6")
DING_DATA_PATH = "usr/share/trans/de-en"

# GNU packages whose German message catalogs form the domain corpus.
# output name -> list of (Debian binary package, exact version).
# gettext is split by Debian into gettext (gettext-tools.mo) and gettext-base
# (gettext-runtime.mo); both come from the one source package and go into one file.
DOMAIN_PACKAGES: "OrderedDict[str, list[tuple[str, str]]]" = OrderedDict(
    [
        ("bash", [("bash", "5.2.15-2+b13")]),
        ("bison", [("bison", "2:3.8.2+dfsg-1+b1")]),
        ("coreutils", [("coreutils", "9.1-1")]),
        ("cpio", [("cpio", "2.13+dfsg-7.1")]),
        ("diffutils", [("diffutils", "1:3.8-4")]),
        ("findutils", [("findutils", "4.9.0-4")]),
        ("gawk", [("gawk", "1:5.2.1-2")]),
        ("gettext", [("gettext", "0.21-12"), ("gettext-base", "0.21-12")]),
        ("grep", [("grep", "3.8-5")]),
        ("make", [("make", "4.3-4.1")]),
        ("nano", [("nano", "7.2-1+deb12u1")]),
        ("sed", [("sed", "4.9-1+deb12u1")]),
        ("sharutils", [("sharutils", "1:4.15.2-9")]),
        ("tar", [("tar", "1.34+dfsg-1.2+deb12u1")]),
        ("texinfo", [("texinfo", "6.8-6+b1")]),
        ("wget", [("wget", "1.21.3-1+deb12u1")]),
    ]
)
# These outputs are written as TSV instead of JSON Lines.
TSV_OUTPUTS = {"sed"}

MO_DIR = "usr/share/locale/de/LC_MESSAGES/"

# Sources of general-domain sentences: German message catalogs of programs
# outside the domain (no GNU command-line tool, no Translation Project catalog
# of the domain, no gnulib catalog). Chosen for full-sentence messages (help
# texts, tooltips, dialogs, game texts), a reasonable download, and free
# licenses that allow the GPL-3.0 under which the demo publishes its model (so
# no GPL-2.0-only source such as phpMyAdmin). Order matters: a sentence found
# in several sources is kept in the first (rule 7 of the extraction rules below).
# output name -> (Debian binary package, exact version, folder of its German .mo files).
LO_MO_DIR = "usr/lib/libreoffice/program/resource/de/LC_MESSAGES/"
GENERAL_PACKAGES: "OrderedDict[str, tuple[str, str, str]]" = OrderedDict(
    [
        ("freeciv", ("freeciv-data", "3.0.6-1+deb12u1", MO_DIR)),
        ("gbrainy", ("gbrainy", "1:2.4.6-1", MO_DIR)),
        ("libreoffice", ("libreoffice-l10n-de", "4:7.4.7-1+deb12u14", LO_MO_DIR)),
        ("gramps", ("gramps", "5.1.5-1", MO_DIR)),
        ("gnucash", ("gnucash-common", "1:4.13-1", MO_DIR)),
        ("gnumeric", ("gnumeric-common", "1.12.55-1", MO_DIR)),
        ("grisbi", ("grisbi-common", "2.0.5-1", MO_DIR)),
        ("lyx", ("lyx-common", "2.3.7-1", MO_DIR)),
        ("gimp", ("gimp-data", "2.10.34-1+deb12u10", MO_DIR)),
        ("inkscape", ("inkscape", "1.2.2-2+deb12u1", MO_DIR)),
        ("hugin", ("hugin-data", "2022.0.0+dfsg-2", MO_DIR)),
        ("shotwell", ("shotwell-common", "0.30.17-1", MO_DIR)),
        ("vlc", ("vlc-l10n", "3.0.24-0+deb12u1", MO_DIR)),
        ("audacity", ("audacity-data", "3.2.4+dfsg-1", MO_DIR)),
        ("evolution", ("evolution-common", "3.46.4-2+deb12u1", MO_DIR)),
        ("claws-mail", ("claws-mail-i18n", "4.1.1-2", MO_DIR)),
        ("pidgin", ("pidgin-data", "2.14.12-1", MO_DIR)),
        ("gajim", ("gajim", "1.7.3-2", "usr/lib/python3/dist-packages/gajim/data/locale/de/LC_MESSAGES/")),
        ("filezilla", ("filezilla-common", "3.63.0-1+deb12u3", MO_DIR)),
        ("geany", ("geany-common", "1.38-1", MO_DIR)),
        ("gtk3", ("libgtk-3-common", "3.24.38-2~deb12u3", MO_DIR)),
        ("nautilus", ("nautilus-data", "43.2-1", MO_DIR)),
        ("cinnamon", ("cinnamon-l10n", "5.6.1-2", MO_DIR)),
        ("orca", ("orca", "43.1-1", MO_DIR)),
        ("network-manager", ("network-manager", "1.42.4-1+deb12u1", MO_DIR)),
        ("aptitude", ("aptitude-common", "0.8.13-5", MO_DIR)),
        ("minetest", ("minetest-data", "5.6.1+dfsg+~1.9.0mt8+dfsg-2", MO_DIR)),
    ]
)

# --------------------------------------------------------------------------
# Extraction rules for the Ding dictionary.
# --------------------------------------------------------------------------

# Characters that mark dictionary annotations: {f} {pl} [geh.] <...> /ABBR/,
# ';' between synonyms, '~' placeholders.
DING_ANNOTATION_CHARS = set("{}[]<>/;~")
SENTENCE_END = (".", "!", "?")
MIN_SENTENCE_EN_WORDS = 4

# Phrase pairs: first synonym of an aligned sub-entry, with {...} grammar tags
# removed; anything else that looks like an annotation disqualifies it.
PHRASE_REJECT_CHARS = DING_ANNOTATION_CHARS | set('()…"')
PHRASE_MIN_WORDS, PHRASE_MAX_WORDS = 2, 4
# Dictionary placeholders ("sth", "jdm.") never occur in running text.
PLACEHOLDER = re.compile(r"\b(sth|sb|etw|jdm|jdn|jds|jd|jmd|jmdm|jmdn)\b", re.IGNORECASE)
BRACE_TAG = re.compile(r"\{[^{}]*\}")
WORD = re.compile(r"\w+")


def one_line(text: str) -> str:
    """Newlines and tabs become a single space each; outer whitespace is stripped."""
    return text.replace("\r\n", "\n").replace("\n", " ").replace("\r", " ").replace("\t", " ").strip()


# --------------------------------------------------------------------------
# Reading .deb files with the standard library.
# --------------------------------------------------------------------------


def ar_members(data: bytes) -> dict[str, bytes]:
    """Members of a (Debian) ar archive."""
    if not data.startswith(b"!<arch>\n"):
        raise ValueError("not an ar archive")
    pos, members = 8, {}
    while pos + 60 <= len(data):
        header = data[pos : pos + 60]
        name = header[:16].decode("ascii").strip().rstrip("/")
        size = int(header[48:58].decode("ascii").strip())
        members[name] = data[pos + 60 : pos + 60 + size]
        pos += 60 + size + (size % 2)
    return members


def open_member_tar(members: dict[str, bytes], stem: str) -> tarfile.TarFile:
    for name, blob in members.items():
        if name.startswith(stem + ".tar"):
            if name.endswith(".zst"):  # not in the stdlib; fall back to zstd(1)
                blob = subprocess.run(["zstd", "-dc"], input=blob, check=True, capture_output=True).stdout
            return tarfile.open(fileobj=io.BytesIO(blob), mode="r:*")
    raise ValueError(f"no {stem}.tar.* member")


class Deb:
    def __init__(self, path: Path):
        self.path = path
        self._members = ar_members(path.read_bytes())
        with open_member_tar(self._members, "control") as tar:
            control = tar.extractfile(tar.getmember("./control")).read().decode("utf-8")
        fields = dict(re.findall(r"^([A-Za-z-]+): *(.*)$", control, flags=re.M))
        self.package, self.version = fields["Package"], fields["Version"]

    def files(self, prefix: str) -> dict[str, bytes]:
        """Regular files whose path starts with prefix (no leading './'), by path."""
        out = {}
        with open_member_tar(self._members, "data") as tar:
            for member in tar.getmembers():
                path = member.name[2:] if member.name.startswith("./") else member.name
                if member.isfile() and path.startswith(prefix):
                    out[path] = tar.extractfile(member).read()
        return dict(sorted(out.items()))


def all_pinned() -> list[tuple[str, str]]:
    pinned = [DING_PACKAGE]
    for parts in DOMAIN_PACKAGES.values():
        pinned.extend(parts)
    pinned.extend((package, version) for package, version, _ in GENERAL_PACKAGES.values())
    return pinned


def download(deb_dir: Path) -> None:
    deb_dir.mkdir(parents=True, exist_ok=True)
    specs = [f"{name}={version}" for name, version in all_pinned()]
    print(f"apt-get download {' '.join(specs)}  (in {deb_dir})", file=sys.stderr)
    subprocess.run(["apt-get", "download", *specs], cwd=deb_dir, check=True)


def find_debs(deb_dir: Path) -> dict[tuple[str, str], Deb]:
    found: dict[tuple[str, str], Deb] = {}
    for path in sorted(deb_dir.glob("*.deb")):
        deb = Deb(path)
        found.setdefault((deb.package, deb.version), deb)
    missing = [f"{n}={v}" for n, v in all_pinned() if (n, v) not in found]
    if missing:
        raise SystemExit(
            f"missing .deb files in {deb_dir}: {' '.join(missing)}\n"
            "Fetch them with --download on Debian 12, or from https://snapshot.debian.org/ "
            "if the archive has moved on."
        )
    return found


# --------------------------------------------------------------------------
# General-domain corpus: Ding.
# --------------------------------------------------------------------------


def ding_aligned_subentries(text: str):
    """(German, English) sub-entries in source order, aligned by position."""
    for line in text.splitlines():
        if line.startswith("#") or " :: " not in line:
            continue
        parts = line.split(" :: ")
        if len(parts) != 2:
            continue
        de_subs, en_subs = parts[0].split(" | "), parts[1].split(" | ")
        if len(de_subs) != len(en_subs):
            continue
        for de, en in zip(de_subs, en_subs):
            yield one_line(de), one_line(en)


def is_sentence_pair(de: str, en: str) -> bool:
    return (
        de.endswith(SENTENCE_END)
        and en.endswith(SENTENCE_END)
        and not (DING_ANNOTATION_CHARS & set(de + en))
        and len(en.split()) >= MIN_SENTENCE_EN_WORDS
    )


def phrase_candidate(de: str, en: str) -> tuple[str, str] | None:
    de = " ".join(BRACE_TAG.sub(" ", de.split(";")[0]).split())
    en = " ".join(BRACE_TAG.sub(" ", en.split(";")[0]).split())
    if not de or not en or PHRASE_REJECT_CHARS & set(de + en) or "..." in de + en:
        return None
    if PLACEHOLDER.search(de) or PLACEHOLDER.search(en):
        return None
    # Sentence-like rows are left to the sentence rule, so that in the output
    # "English ends in . ! ?" tells sentences and phrases apart.
    if de.endswith(SENTENCE_END) or en.endswith(SENTENCE_END):
        return None
    if not (PHRASE_MIN_WORDS <= len(en.split()) <= PHRASE_MAX_WORDS):
        return None
    if not (PHRASE_MIN_WORDS <= len(de.split()) <= PHRASE_MAX_WORDS):
        return None
    return en, de


def words(text: str) -> set[str]:
    return set(WORD.findall(text.lower()))


def extract_ding(text: str) -> tuple[list[tuple[str, str]], int, int]:
    """Returns (pairs in source order, number of sentences, number of phrases).

    Pass 1 keeps every sentence pair. Pass 2 walks the dictionary again and keeps
    a phrase pair only if it brings at least one English AND one German word type
    that the sentences and the phrases kept so far do not have yet.
    """
    subs = list(ding_aligned_subentries(text))
    seen: set[tuple[str, str]] = set()
    kind: dict[int, tuple[str, str]] = {}  # sub-entry index -> kept (en, de)
    vocab_en: set[str] = set()
    vocab_de: set[str] = set()
    for i, (de, en) in enumerate(subs):
        if is_sentence_pair(de, en) and (en, de) not in seen:
            seen.add((en, de))
            kind[i] = (en, de)
            vocab_en |= words(en)
            vocab_de |= words(de)
    n_sentences = len(kind)
    for i, (de, en) in enumerate(subs):
        if i in kind:
            continue
        cand = phrase_candidate(de, en)
        if cand is None or cand in seen:
            continue
        new_en, new_de = words(cand[0]) - vocab_en, words(cand[1]) - vocab_de
        if new_en and new_de:
            seen.add(cand)
            kind[i] = cand
            vocab_en |= new_en
            vocab_de |= new_de
    pairs = [kind[i] for i in sorted(kind)]
    return pairs, n_sentences, len(pairs) - n_sentences


# --------------------------------------------------------------------------
# Domain corpus: GNU message catalogs.
# --------------------------------------------------------------------------

GERMAN_PLURAL_FORMS = re.compile(r"nplurals\s*=\s*2;\s*plural\s*=\s*\(?\s*n\s*!=\s*1\s*\)?\s*;?")


def mo_pairs(blob: bytes) -> tuple[list[tuple[str, str]], dict[str, str]]:
    """(en, de) pairs of one .mo file, in catalog order, and its header."""
    mo = polib.mofile(blob)
    plural_ok = bool(GERMAN_PLURAL_FORMS.fullmatch(mo.metadata.get("Plural-Forms", "").strip()))
    pairs = []
    for entry in mo:
        if not entry.msgid or "fuzzy" in entry.flags or entry.obsolete:
            continue
        if entry.msgid_plural:
            # Keep the singular: msgid with msgstr[0] (German form for n == 1).
            de = entry.msgstr_plural.get(0, "") if plural_ok else ""
        else:
            de = entry.msgstr
        en, de = one_line(entry.msgid), one_line(de)
        if en and de:
            pairs.append((en, de))
    return pairs, dict(mo.metadata)


def extract_domain(debs: dict[tuple[str, str], Deb]):
    """name -> (unique pairs, per-.mo info) for every output file."""
    result = OrderedDict()
    for name, parts in DOMAIN_PACKAGES.items():
        pairs, seen, info = [], set(), []
        for package, version in parts:
            for path, blob in debs[(package, version)].files(MO_DIR).items():
                if not path.endswith(".mo"):
                    continue
                mo_list, meta = mo_pairs(blob)
                info.append((package, version, path, len(mo_list), meta))
                for pair in mo_list:
                    if pair not in seen:
                        seen.add(pair)
                        pairs.append(pair)
        if not pairs:
            raise SystemExit(f"{name}: no German messages found")
        result[name] = (pairs, info)
    return result


# --------------------------------------------------------------------------
# General-domain corpus: message catalogs outside the domain.
# --------------------------------------------------------------------------

# Extraction rules, applied to every entry of every German .mo file in each
# source's folder, in this order (README: "Extraction rules"):
#  1. skip the header, fuzzy and obsolete entries; plural entries give the
#     English singular with msgstr[0], as in the domain (mo_pairs);
#  2. newlines and tabs become spaces (one_line); an entry with three spaces
#     in a row on either side is layout (aligned columns, indented option
#     lists) and is dropped; then every run of whitespace becomes one space;
#  3. drop empty translations and translations equal to the English;
#  4. drop markup and placeholder noise: any of NOISE_CHARS on either side
#     (markup <b>, entities and accelerators &, mnemonics _, {0} and $1 and
#     %1$s placeholders, [options], @-codes, LaTeX \commands, ...), or a
#     different number of '%' on the two sides;
#  5. sentence-like: both sides start with an upper-case letter, the English
#     has MIN_WORDS..MAX_WORDS words (split on whitespace), and the German has
#     between MIN_RATIO and MAX_RATIO times as many words as the English;
#  6. never a domain sentence: drop the pair when its English key occurs among
#     the English (msgid, msgid_plural) or its German key among the German
#     (msgstr) strings of any DOMAIN catalog, where key() lower-cases and keeps
#     only the \w+ tokens ("Memory exhausted." and "memory exhausted" match);
#  7. deduplicate on the English key over all general sources: the first
#     occurrence is kept (sources in GENERAL_PACKAGES order, catalogs in path
#     order, entries in catalog order, i.e. sorted by msgid).
NOISE_CHARS = set("<>{}[]|\\_@$&#`^~*=")
MIN_WORDS, MAX_WORDS = 4, 50
MIN_RATIO, MAX_RATIO = 0.5, 2.0


def key(text: str) -> str:
    return " ".join(WORD.findall(text.casefold()))


def general_reject(en: str, de: str) -> str | None:
    """Why the pair fails rules 2-5 (None: keep it). en, de come from one_line()."""
    if "   " in en or "   " in de:
        return "layout"
    en, de = " ".join(en.split()), " ".join(de.split())
    if not en or not de or en == de:
        return "empty or untranslated"
    if NOISE_CHARS & set(en + de) or en.count("%") != de.count("%"):
        return "markup or placeholders"
    if not (en[0].isupper() and de[0].isupper()):
        return "not sentence-like"
    n_en, n_de = len(en.split()), len(de.split())
    if not (MIN_WORDS <= n_en <= MAX_WORDS and MIN_RATIO * n_en <= n_de <= MAX_RATIO * n_en):
        return "not sentence-like"
    return None


def domain_keys(debs: dict[tuple[str, str], Deb]) -> tuple[set[str], set[str]]:
    """key() of every English and every German string in the domain catalogs."""
    en_keys, de_keys = set(), set()
    for parts in DOMAIN_PACKAGES.values():
        for package_version in parts:
            for path, blob in debs[package_version].files(MO_DIR).items():
                if not path.endswith(".mo"):
                    continue
                for entry in polib.mofile(blob):
                    en_keys.update(key(s) for s in (entry.msgid, entry.msgid_plural) if s)
                    de_keys.update(key(s) for s in [entry.msgstr, *entry.msgstr_plural.values()] if s)
    en_keys.discard("")
    de_keys.discard("")
    return en_keys, de_keys


def extract_general(debs: dict[tuple[str, str], Deb], dropped: "OrderedDict[str, int]"):
    """name -> (pairs, per-.mo info [(path, pairs kept, header)]); counts why pairs were dropped."""
    en_domain, de_domain = domain_keys(debs)
    seen: set[str] = set()
    result = OrderedDict()
    for name, (package, version, folder) in GENERAL_PACKAGES.items():
        pairs, info = [], []
        for path, blob in debs[(package, version)].files(folder).items():
            if not path.endswith(".mo") or "gnulib" in Path(path).name:
                continue
            catalog_pairs, meta = mo_pairs(blob)
            kept = 0
            for en, de in catalog_pairs:
                why = general_reject(en, de)
                en, de = " ".join(en.split()), " ".join(de.split())
                if why is None and (key(en) in en_domain or key(de) in de_domain):
                    why = "in the domain catalogs"
                if why is None and key(en) in seen:
                    why = "duplicate"
                if why is not None:
                    dropped[why] = dropped.get(why, 0) + 1
                    continue
                seen.add(key(en))
                pairs.append((en, de))
                kept += 1
            info.append((path, kept, meta))
        if not pairs:
            raise SystemExit(f"{name}: no German sentences found in {package} {version}")
        result[name] = (pairs, info)
    return result


# --------------------------------------------------------------------------
# Output.
# --------------------------------------------------------------------------


def write_tsv(path: Path, pairs) -> None:
    lines = ["en\tde"] + [f"{en}\t{de}" for en, de in pairs]
    path.write_bytes(("\n".join(lines) + "\n").encode("utf-8"))


def write_jsonl(path: Path, pairs) -> None:
    lines = [json.dumps({"translation": {"en": en, "de": de}}, ensure_ascii=False) for en, de in pairs]
    path.write_bytes(("\n".join(lines) + "\n").encode("utf-8"))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(argv=None) -> int:
    here = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--debs", type=Path, default=here.parent / ".cache" / "debs", help="folder with the .deb files (default: .cache/debs)"
    )
    parser.add_argument("--download", action="store_true", help="apt-get download the pinned packages into --debs first")
    parser.add_argument("--out", type=Path, default=here / "data", help="output folder (default: demo/data)")
    args = parser.parse_args(argv)

    if args.download:
        if not shutil.which("apt-get"):
            raise SystemExit("--download needs apt-get (a Debian 12 machine)")
        download(args.debs)
    if not args.debs.is_dir():
        raise SystemExit(f"{args.debs} is not a folder; pass --debs DIR or --download")
    debs = find_debs(args.debs)

    general_dir, domain_dir = args.out / "general", args.out / "domain"
    general_dir.mkdir(parents=True, exist_ok=True)
    domain_dir.mkdir(parents=True, exist_ok=True)

    # General domain: Ding, then the message catalogs.
    ding_deb = debs[DING_PACKAGE]
    ding_text = ding_deb.files(DING_DATA_PATH)[DING_DATA_PATH].decode("utf-8")
    ding_pairs, n_sent, n_phr = extract_ding(ding_text)
    ding_out = general_dir / "ding.en-de.tsv"
    write_tsv(ding_out, ding_pairs)
    written = [("ding", ding_out, len(ding_pairs), f"trans-de-en {DING_PACKAGE[1]}: {n_sent} sentences + {n_phr} phrases")]
    dropped: "OrderedDict[str, int]" = OrderedDict()
    sentences = []
    for name, (pairs, info) in extract_general(debs, dropped).items():
        out = general_dir / f"{name}.en-de.tsv"
        write_tsv(out, pairs)
        sentences.extend(pairs)
        package, version, _ = GENERAL_PACKAGES[name]
        sources = ", ".join(f"{Path(p).name} ({n})" for p, n, _ in info)
        written.append(("general", out, len(pairs), f"{package} {version}: {sources}"))

    # Software-localization domain.
    for name, (pairs, info) in extract_domain(debs).items():
        if name in TSV_OUTPUTS:
            out = domain_dir / f"{name}.en-de.tsv"
            write_tsv(out, pairs)
        else:
            out = domain_dir / f"{name}.de.jsonl"
            write_jsonl(out, pairs)
        sources = ", ".join(f"{Path(p).name} ({n}, {m.get('Project-Id-Version', '?')})" for _, _, p, n, m in info)
        versions = ", ".join(f"{pkg} {ver}" for pkg, ver in DOMAIN_PACKAGES[name])
        written.append(("domain", out, len(pairs), f"{versions}: {sources}"))

    report(args.out, written, dropped, sentences)
    return 0


def report(out_dir: Path, written, dropped, sentences) -> None:
    print(f"{'file':<40} {'pairs':>6} {'bytes':>9}  sha256[:12]  source")
    for _, path, count, note in written:
        print(f"{str(path.relative_to(out_dir)):<40} {count:>6} {path.stat().st_size:>9}  {sha256(path)[:12]}  {note}")
    for kind in ("ding", "general", "domain"):
        rows = [(count, path.stat().st_size) for k, path, count, _ in written if k == kind]
        print(f"{kind}: {len(rows)} files, {sum(c for c, _ in rows)} pairs, {sum(b for _, b in rows)} bytes")
    print("general catalogs, pairs dropped: " + ", ".join(f"{why} {n}" for why, n in dropped.items()))
    lengths = sorted(len(en.split()) for en, _ in sentences)
    de_words = sum(len(de.split()) for _, de in sentences)

    def pick(q: float) -> int:
        return lengths[min(len(lengths) - 1, int(q * len(lengths)))]

    print(
        f"general catalogs, English words per pair: mean {sum(lengths) / len(lengths):.1f}, "
        f"median {pick(0.5)}, p90 {pick(0.9)}, p95 {pick(0.95)}, p99 {pick(0.99)}, max {lengths[-1]}; "
        f"total {sum(lengths)} English and {de_words} German words; "
        f"ending in . ! ?: {sum(en.endswith(SENTENCE_END) for en, _ in sentences)}"
    )


if __name__ == "__main__":
    sys.exit(main())
