"""Fonts for names in any script on annotated images and contact sheets.

The fonts come from OFL-licensed PyPI packages that are faceid dependencies (Noto Sans for
Latin, Greek and Cyrillic; Noto Sans Arabic; Noto Sans Devanagari; Noto Sans CJK JP for Chinese,
Japanese and Korean). Like model files, each is verified by SHA-256 before first use; a missing
or altered file is left out with a warning and the next font in the chain is used, so a label is
never lost, only drawn with fewer scripts.

Text is cut into runs, each drawn with the first font of the chain whose character map holds
every character of the run (combining marks and the joiners U+200C/U+200D stay with the
character before them). With Pillow's raqm layout (``PIL.features.check("raqm")``, present in
Pillow's own wheels) each run is shaped: Arabic letters joined, Devanagari conjuncts formed,
right-to-left runs laid out right to left. Without raqm the basic layout draws the same glyphs
unjoined.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import unicodedata
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["FONTS", "FontFile", "TextFonts", "available_fonts", "text_fonts"]

ELLIPSIS = "\u2026"


@dataclass(frozen=True)
class FontFile:
    """One bundled font: the package that ships it, its path inside, SHA-256, and what it is for."""

    package: str
    path: str
    sha256: str
    scripts: str


#: The fallback chain, first choice first.
FONTS = (
    FontFile(
        "fontpkg_noto_sans",
        "files/NotoSans[wdth,wght].ttf",
        "bfb7bb691513f12e734dc346c03a03f784912432d7e3fa8e56efcf906fe86b3d",
        "Latin, Greek, Cyrillic",
    ),
    FontFile(
        "fontpkg_noto_sans_arabic",
        "files/NotoSansArabic[wdth,wght].ttf",
        "63111b5b2e074dd48cc67692e0a2726d86ee94c1c37fe8598257b7b4e87e869e",
        "Arabic, Persian, Urdu",
    ),
    FontFile(
        "fontpkg_noto_sans_devanagari",
        "files/NotoSansDevanagari[wdth,wght].ttf",
        "14ec4af41f27482216d1c2229f417ff9b1425e1babb014e57d1d40d03229853e",
        "Devanagari",
    ),
    FontFile(
        "noto_cjk_sans_jp_regular",
        "NotoSansCJKjp-Regular.otf",
        "68a3fc98800b2a27b371f2fb79991daf3633bd89309d4ffaa6946fd587f375b5",
        "Chinese, Japanese, Korean",
    ),
)


def _locate(font: FontFile) -> Path | None:
    spec = importlib.util.find_spec(font.package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / font.path


@cache
def _verified(index: int) -> tuple[Path, frozenset[int]] | None:
    """``(path, code points it covers)`` of bundled font ``index`` if installed and verified, else ``None``."""
    from fontTools.ttLib import TTFont

    font = FONTS[index]
    path = _locate(font)
    if path is None or not path.is_file():
        log.warning("font %s (%s) is not installed; names in it are drawn with another font", font.path, font.scripts)
        return None
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != font.sha256:
        log.warning("font %s: sha256 %s, expected %s; not used", path, digest, font.sha256)
        return None
    with TTFont(path, lazy=True) as tt:
        return path, frozenset(tt.getBestCmap())


def available_fonts() -> tuple[tuple[Path, frozenset[int]], ...]:
    """``(path, code points it covers)`` of every bundled font that is installed and verified, in chain order."""
    return tuple(found for found in map(_verified, range(len(FONTS))) if found is not None)


def _attached(char: str) -> bool:
    """True for a character that belongs with the one before it (marks, joiners, variation selectors)."""
    return unicodedata.category(char) in ("Mn", "Mc", "Me") or char in "\u200c\u200d" or 0xFE00 <= ord(char) <= 0xFE0F


def _rtl(text: str) -> bool:
    return any(unicodedata.bidirectional(c) in ("R", "AL") for c in text)


class TextFonts:
    """The chain of bundled fonts at one pixel size: measure, shorten and draw text in any script."""

    def __init__(self, size: int) -> None:
        from PIL import ImageFont

        self.size = size
        self._fonts: dict[int, tuple[Any, frozenset[int]] | None] = {}  # loaded when first needed
        self._default = ImageFont.load_default(size=size)

    def _font(self, index: int) -> tuple[Any, frozenset[int]] | None:
        """Font ``index`` of the chain at this size (verified and opened on first use: the CJK one is 16 MB)."""
        if index not in self._fonts:
            from PIL import ImageFont, features

            found = _verified(index)
            engine = ImageFont.Layout.RAQM if features.check("raqm") else ImageFont.Layout.BASIC
            self._fonts[index] = (
                None
                if found is None
                else (ImageFont.truetype(str(found[0]), self.size, layout_engine=engine), found[1])
            )
        return self._fonts[index]

    def _font_for(self, char: str) -> Any:
        for index in range(len(FONTS)):
            found = self._font(index)
            if found is not None and ord(char) in found[1]:
                return found[0]
        return self._default

    def runs(self, text: str) -> list[tuple[str, Any]]:
        """``text`` cut into ``(run, font)`` pieces in visual order (right-to-left runs side by side are reversed)."""
        runs: list[tuple[str, Any]] = []
        for char in text:
            if runs and (_attached(char) or self._covers(runs[-1][1], char)):
                runs[-1] = (runs[-1][0] + char, runs[-1][1])
                continue
            runs.append((char, self._font_for(char)))
        out: list[tuple[str, Any]] = []
        i = 0
        while i < len(runs):  # a left-to-right line: consecutive right-to-left runs read right to left
            j = i
            while j < len(runs) and _rtl(runs[j][0]):
                j += 1
            if j > i:
                out.extend(reversed(runs[i:j]))
                i = j
            else:
                out.append(runs[i])
                i += 1
        return out

    def _covers(self, font: Any, char: str) -> bool:
        return any(f is not None and f[0] is font and ord(char) in f[1] for f in self._fonts.values())

    def bbox(self, text: str) -> tuple[int, int, int, int]:
        """``(left, top, right, bottom)`` of ``text``'s ink drawn at ``(0, 0)``, the baseline's left end (top < 0)."""
        x, top, bottom, left = 0, None, None, None
        for run, font in self.runs(text):
            x0, y0, x1, y1 = font.getbbox(run, anchor="ls")
            left = x + x0 if left is None else left
            top = y0 if top is None else min(top, y0)
            bottom = y1 if bottom is None else max(bottom, y1)
            x += int(round(font.getlength(run)))
        return (left or 0, top or 0, max(x, left or 0), bottom or 0)

    def width(self, text: str) -> int:
        left, _, right, _ = self.bbox(text)
        return right - left

    def fit(self, text: str, width: int, keep: str = "") -> str:
        """``text + keep``, with ``text`` cut and ended by an ellipsis where needed to fit ``width`` pixels.

        Cuts never split a character from its marks or joiners.
        """
        if self.width(text + keep) <= width:
            return text + keep
        cuts = [i for i in range(len(text)) if i == 0 or not _attached(text[i])]
        lo, hi = 0, len(cuts) - 1  # the longest cut that fits
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.width(text[: cuts[mid]].rstrip() + ELLIPSIS + keep) <= width:
                lo = mid
            else:
                hi = mid - 1
        return text[: cuts[lo]].rstrip() + ELLIPSIS + keep

    def draw(self, draw: Any, xy: tuple[int, int], text: str, fill: Any) -> None:
        """Draw ``text`` with its baseline starting at ``xy`` (so ``bbox`` shifted by ``xy`` is where the ink goes)."""
        x, y = xy
        for run, font in self.runs(text):
            draw.text((x, y), run, fill=fill, font=font, anchor="ls")
            x += int(round(font.getlength(run)))


@lru_cache(maxsize=16)
def text_fonts(size: int) -> TextFonts:
    """The (cached) :class:`TextFonts` at ``size`` pixels."""
    return TextFonts(size)
