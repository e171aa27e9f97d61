#!/usr/bin/env python3
"""Rebuild the demo's bundled English-German corpora from pinned Debian packages.

Outputs (under --out, default: demo/data next to this script):

  general/ding.en-de.tsv       General-domain corpus from the Ding dictionary
                               (Debian package trans-de-en): example sentences
                               plus a limited set of short phrase pairs.
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

    # General domain.
    ding_deb = debs[DING_PACKAGE]
    ding_text = ding_deb.files(DING_DATA_PATH)[DING_DATA_PATH].decode("utf-8")
    ding_pairs, n_sent, n_phr = extract_ding(ding_text)
    ding_out = general_dir / "ding.en-de.tsv"
    write_tsv(ding_out, ding_pairs)
    written = [(ding_out, len(ding_pairs), f"trans-de-en {DING_PACKAGE[1]}: {n_sent} sentences + {n_phr} phrases")]

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
        written.append((out, len(pairs), f"{versions}: {sources}"))

    print(f"{'file':<40} {'pairs':>6} {'bytes':>9}  sha256[:12]  source")
    total_bytes = 0
    for path, count, note in written:
        size = path.stat().st_size
        total_bytes += size
        print(f"{str(path.relative_to(args.out)):<40} {count:>6} {size:>9}  {sha256(path)[:12]}  {note}")
    domain_total = sum(count for _, count, _ in written[1:])
    print(f"general pairs: {written[0][1]}   domain pairs: {domain_total}   bytes: {total_bytes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
