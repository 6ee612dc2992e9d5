"""Text-file encodings: UTF-8 when the bytes are UTF-8, else what charset-normalizer detects (said on stderr).

Spreadsheet exports are often cp1252 with CRLF line ends; reading them as latin-1 garbles €, – and ’ (cp1252
puts them in 0x80-0x9f, where latin-1 has control codes), so an explicit `encoding` always wins and `auto`
never guesses latin-1 over cp1252."""
from __future__ import annotations

import codecs
import sys
from functools import lru_cache
from pathlib import Path

from finpeft.errors import FinpeftError

TEXT_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json")


def check_encoding(name: str) -> str:
    if name == "auto":
        return name
    try:
        codecs.lookup(name)
    except LookupError:
        raise FinpeftError(f"unknown text encoding {name!r} (e.g. auto, utf-8, cp1252, latin-1)") from None
    return name


def resolve_encoding(path: str | Path, encoding: str = "auto", quiet: bool = False) -> str:
    """`encoding` itself unless it is `auto`; then utf-8 (a BOM is skipped) or the detected one, with a warning."""
    path = Path(path)
    if encoding != "auto" or path.suffix.lower() not in TEXT_SUFFIXES or not path.is_file():
        return "utf-8" if encoding == "auto" else encoding
    found = _detect(str(path), path.stat().st_size, path.stat().st_mtime_ns)
    if found not in ("utf-8", "utf-8-sig", "ascii") and not quiet:
        print(f"finpeft: warning: {path} is not UTF-8; reading it as {found} (detected; set --encoding / "
              f"data.encoding to choose)", file=sys.stderr)
    return found


@lru_cache(maxsize=64)
def _detect(path: str, size: int, mtime_ns: int) -> str:
    raw = Path(path).read_bytes()
    if raw.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    try:
        raw.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes
    # charset-normalizer's own pick ranks by "chaos" alone, and short Western texts are as clean in cp852 as in
    # cp1252 (it then returns cp852 and garbles € – ’): among the near-cleanest candidates take the most
    # coherent language-wise, cp1252 on a tie.
    results = list(from_bytes(raw))
    if results:
        low = min(r.chaos for r in results)
        clean = [r for r in results if r.chaos <= low + 0.02]
        best = max(clean, key=lambda r: r.coherence)
        western = [r for r in clean if codecs.lookup(r.encoding).name == "cp1252"]
        if western and western[0].coherence >= best.coherence - 0.1:
            best = western[0]
    name = codecs.lookup(best.encoding).name if results else "cp1252"
    # Western single-byte text: cp1252 is a superset of latin-1 for printable text (€ – ’ “ ” live in 0x80-0x9f)
    return "cp1252" if name in ("latin-1", "iso8859-1", "iso8859-15") else name
