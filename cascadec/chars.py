"""Characters that look like something else: their Unicode names, their ASCII look-alikes, and how a diagnostic
shows them without letting them act on the terminal.

Bidirectional controls (U+202A-U+202E, U+2066-U+2069) reorder how the text around them is displayed, so that
what a reviewer reads is not what the parser reads ("Trojan Source", Boucher & Anderson 2021, CVE-2021-42574);
zero-width characters hide in plain sight. Diagnostics therefore never echo them raw: `escaped` writes them as
`<U+202E>`.
"""

from __future__ import annotations

import unicodedata

# characters word processors and keyboard layouts put where ASCII was meant, that NFKC does not map to ASCII
_LOOKALIKES = {
    **dict.fromkeys("\u201c\u201d\u201e\u201f\u2033\u00ab\u00bb\u2018\u2019\u201a\u201b\u2032", '"'),
    **dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63", "-"),
    "\u2264": "<=", "\u2265": ">=", "\u00d7": "*", "\u2217": "*", "\u2044": "/",
}
# categories that draw nothing or act on the text around them: controls, formats (bidi controls, zero-width
# characters, the BOM), line and paragraph separators
_UNSEEN = frozenset({"Cc", "Cf", "Zl", "Zp"})


def describe(ch: str) -> str:
    """``U+FF1D FULLWIDTH EQUALS SIGN``; the code point alone for a character without a name (a control)."""
    name = unicodedata.name(ch, "")
    return f"U+{ord(ch):04X} {name}" if name else f"U+{ord(ch):04X}"


def lookalike(ch: str) -> str | None:
    """The ASCII text ``ch`` was most likely meant as (`＝` → `=`, `“` → `"`, `–` → `-`, a no-break space → a
    space), or None when there is none. Fullwidth forms and spaces map by compatibility (NFKC)."""
    if ch in _LOOKALIKES:
        return _LOOKALIKES[ch]
    if unicodedata.category(ch) == "Zs":
        return " "
    plain = unicodedata.normalize("NFKC", ch)
    return plain if plain != ch and plain.isascii() and plain.isprintable() else None


def unseen(ch: str) -> bool:
    """Whether ``ch`` draws nothing visible or changes how other text is drawn (bidi and zero-width
    characters, controls, line separators); ASCII space, tab and newline are not."""
    return ch not in " \t\n" and unicodedata.category(ch) in _UNSEEN


def shown(ch: str) -> str:
    """``ch`` as a diagnostic message quotes it: `` `＝` `` when it can be seen, else its code point."""
    return f"`{ch}`" if ch.isprintable() and not ch.isspace() else f"U+{ord(ch):04X}"


def escaped(text: str) -> str:
    """``text`` with every `unseen` character written as ``<U+XXXX>`` (tabs and newlines kept)."""
    if text.isascii() and text.isprintable():
        return text
    return "".join(f"<U+{ord(ch):04X}>" if unseen(ch) else ch for ch in text)
