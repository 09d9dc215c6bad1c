"""The name rule: any script, its combining marks and the joiners; no other control or format characters."""

from __future__ import annotations

import pytest

from faceid.errors import InvalidNameError
from faceid.gallery import normalise_name

ACCEPTED = [
    "نیلوفر\u200cها",  # Persian: the zero-width non-joiner keeps two letters apart
    "क्\u200dष",  # Devanagari: the zero-width joiner asks for a half form
    "مُحَمَّد",  # Arabic with its vowel marks (combining, Mn)
    "ก้อง",  # Thai tone mark
    "Zoë Ñandú 李",
    "Ἀθηνᾶ Юлия",
    "Zoë 👩\u200d💻",
    "e\u0301",  # decomposed: stored NFC
]
REFUSED = ["a\x07b", "a\u202eb", "a\u200bb", "a\ufeffb", "a\u2066b", "a\ue000b", "a\U000e0001b", "a\nb"]


@pytest.mark.parametrize("name", ACCEPTED)
def test_names_in_any_script_with_marks_and_joiners_are_kept(name):
    import unicodedata

    assert normalise_name(name) == unicodedata.normalize("NFC", name)


@pytest.mark.parametrize("name", REFUSED, ids=lambda n: f"U+{ord(n[1]):04X}")
def test_other_control_and_format_characters_are_refused_by_code_point(name):
    with pytest.raises(InvalidNameError, match=f"U\\+{ord(name[1]):04X}"):
        normalise_name(name)
