"""Format placeholders in software messages, compared so that legitimate reordering passes.

Software localization data is full of placeholders that the program fills in at run time: printf's `%s`,
`%5.2f`, `%lu`, `%<PRIuMAX>` (gettext), positional `%2$s`; Python's `%(name)s`; brace fields `{name}`, `{0}`,
`{}`; Qt's `%1`. A translation that drops, adds or changes one crashes or garbles the program, and a model
trained on such pairs learns to do the same.

Each placeholder becomes a canonical key: printf conversions are keyed by the argument they consume, so a
German translation may reorder `%s … %d` as `%2$d … %1$s` (same keys) but may not swap them as `%d … %s`
(different keys). `%%`, `{{` and `}}` are literal characters, not placeholders.
"""

from __future__ import annotations

import re
from collections import Counter

PATTERN = re.compile(r"""
    (?P<escape>%%|\{\{|\}\})
  | %\((?P<py_name>[^()\s]+)\)[-+\#0\ ]*(?:\d+|\*)?(?:\.\d+)?(?P<py_conv>[diouxXeEfFgGcrsa])
  | %(?:(?P<pos>[1-9]\d*)\$)?[-+\#0']*
      (?P<width>\*(?:[1-9]\d*\$)?|\d+)?
      (?:\.(?P<prec>\*(?:[1-9]\d*\$)?|\d*))?
      (?P<size>hh|ll|[hlLqjzZt]|I64|I32|R[NZUDYA]?)?
      (?P<conv>[diouxXeEfFgGaAcsSpn]|<PRI\w+>)
  | %(?P<qt>[1-9]\d?)(?![\d$])
  | (?<!\$)\{(?P<field>\d*|[A-Za-z_]\w*(?:\.\w+|\[[^\]{}]*\])*)(?:![rsa])?(?::[^{}]*)?\}
""", re.VERBOSE)

# Left out on purpose: printf's space flag (`% d`), or "50% done" would read as a placeholder; and `${NAME}`,
# a shell or template variable that the program does not fill in. `%Rg` is MPFR's (gawk's) size modifier.

Key = tuple


def keys(text: str) -> list[tuple[Key, str]]:
    """(canonical key, placeholder as written) for each placeholder, in order."""
    found = []
    next_arg = 1  # printf's implicit argument counter
    next_field = 0  # str.format's automatic field numbering
    for m in PATTERN.finditer(text):
        if m["escape"]:
            continue
        if m["py_name"]:
            found.append((("python", m["py_name"], m["py_conv"]), m.group()))
        elif m["conv"]:
            for star in (m["width"], m["prec"]):
                if star and star.startswith("*"):
                    if star.endswith("$"):
                        arg = int(star[1:-1])
                    else:
                        arg, next_arg = next_arg, next_arg + 1
                    found.append((("printf", arg, "*"), m.group()))
            if m["pos"]:
                arg = int(m["pos"])
            else:
                arg, next_arg = next_arg, next_arg + 1
            conv = "d" if m["conv"] == "i" else m["conv"]
            found.append((("printf", arg, (m["size"] or "") + conv), m.group()))
        elif m["qt"]:
            found.append((("qt", int(m["qt"])), m.group()))
        else:
            field = m["field"]
            if field == "":
                field, next_field = str(next_field), next_field + 1
            found.append((("brace", field), m.group()))
    return found


def mismatch(source: str, target: str) -> str | None:
    """None when both sides carry the same placeholders (up to reordering), else what differs."""
    if "%" not in source and "{" not in source and "%" not in target and "{" not in target:
        return None
    src, tgt = keys(source), keys(target)
    src_count, tgt_count = Counter(k for k, _ in src), Counter(k for k, _ in tgt)
    if src_count == tgt_count:
        return None
    missing = _written(src, src_count - tgt_count)
    extra = _written(tgt, tgt_count - src_count)
    parts = ([f"target lacks {', '.join(missing)}"] if missing else []) + \
            ([f"target adds {', '.join(extra)}"] if extra else [])
    return "; ".join(parts)


def _written(found: list[tuple[Key, str]], wanted: Counter) -> list[str]:
    left = Counter(wanted)
    out = []
    for key, text in found:
        if left[key] > 0:
            left[key] -= 1
            out.append(text)
    return out
