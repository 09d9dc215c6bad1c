"""Names in any script on annotated images: bundled fonts, no tofu, shaped, ellipsised to the box."""

from __future__ import annotations

import numpy as np
import pytest

from faceid.draw import MIN_LABEL_EMS, annotate, plan_labels
from faceid.fonts import FONTS, available_fonts, text_fonts
from faceid.results import DecisionParams, Detection, FaceMatch, Identification

NAMES = {
    "latin and cjk": "Zoë Ñandú 李",
    "arabic": "محمد رضا",
    "persian with a zwnj": "نیلوفر\u200cها",
    "devanagari": "अनुष्का शर्मा",
    "greek and cyrillic": "Ἀθηνᾶ Юлия",
}
UNCOVERED = "\U000e01ef"  # a variation selector no font maps: drawn as each font's .notdef box


def _pixels(font, text: str, size: int = 48) -> np.ndarray:
    from PIL import Image, ImageDraw

    image = Image.new("L", (size * 4, size * 2), 0)
    ImageDraw.Draw(image).text((4, size * 1.5), text, fill=255, font=font, anchor="ls")
    return np.asarray(image)


def _face(name: str, box=(40, 300, 200, 200)) -> FaceMatch:
    return FaceMatch(Detection(box, 0.99, ((0.0, 0.0),) * 5), "known", name, 0.87, 0.5, ())


def _result(*faces: FaceMatch) -> Identification:
    return Identification("x.jpg", faces, DecisionParams(0.3, 0.05))


def test_every_bundled_font_is_installed_and_verified():
    assert len(available_fonts()) == len(FONTS), "a bundled font is missing or its sha256 differs (see the log)"


@pytest.mark.parametrize("name", list(NAMES.values()), ids=list(NAMES))
def test_no_character_of_a_name_is_drawn_as_tofu(name):
    fonts = text_fonts(48)
    for run, font in fonts.runs(name):
        tofu = _pixels(font, UNCOVERED)
        assert tofu.any(), "the .notdef box should have ink"
        for char in run:
            if char.isspace() or char in "\u200c\u200d" or not char.isprintable():
                continue
            glyph = _pixels(font, char)
            assert glyph.any(), f"{char!r} drew nothing"
            assert not np.array_equal(glyph, tofu), f"{char!r} drew the .notdef box of {font.path}"


def test_the_old_default_font_would_draw_tofu():
    """The check above can fail: Pillow's default font draws 李 as its .notdef box."""
    from PIL import ImageFont

    default = ImageFont.load_default(size=48)
    assert np.array_equal(_pixels(default, "李"), _pixels(default, UNCOVERED))


@pytest.mark.parametrize("name", ["محمد", "अनुष्का"], ids=["arabic", "devanagari"])
def test_names_are_shaped_when_raqm_is_there(name):
    """Arabic letters joined, Devanagari conjuncts formed: not the unshaped basic layout."""
    from PIL import ImageFont, features

    if not features.check("raqm"):
        pytest.skip("this Pillow has no raqm layout: letters are drawn unshaped")
    [(run, font)] = text_fonts(48).runs(name)
    basic = ImageFont.truetype(font.path, 48, layout_engine=ImageFont.Layout.BASIC)
    assert run == name
    assert not np.array_equal(_pixels(font, name), _pixels(basic, name))


def test_a_200_character_name_stays_within_its_box():
    box = (40, 300, 300, 300)
    result = _result(_face("Ñ" * 200, box), _face("Ada", (600, 300, 200, 200)))
    _, line, labels = plan_labels((1000, 800), result)
    x0, _, x1, _ = labels[0].rect
    assert x1 - x0 <= box[2]
    assert labels[0].text.endswith("\u2026 (0.87)")
    assert labels[1].text == "Ada (0.87)"
    # drawn: nothing crosses the white gap between the long-named face's box and the next face
    drawn = np.asarray(annotate(np.full((800, 1000, 3), 255, np.uint8), result))
    assert (drawn[:, box[0] + box[2] + line + 1 : 600] == 255).all()


def test_a_label_on_a_small_face_keeps_a_few_characters():
    _, _, [label] = plan_labels((1000, 800), _result(_face("Bartholomew Featherstonehaugh", (40, 300, 20, 20))))
    fonts = text_fonts(max(12, round(1000 / 55)))
    assert label.text.startswith("Bar") and label.text.endswith("\u2026 (0.87)")
    assert fonts.width(label.text) <= MIN_LABEL_EMS * fonts.size


def test_cuts_keep_marks_with_their_letter():
    fonts = text_fonts(20)
    name = "e\u0301" * 60  # e + combining acute, 60 times
    cut = fonts.fit(name, 100)
    assert cut.endswith("\u2026") and cut[-2] == "\u0301"


def test_contact_sheets_draw_their_title_and_ids_with_the_bundled_fonts():
    import io

    from PIL import Image

    from faceid.sheets import contact_sheet

    sheet = Image.open(io.BytesIO(contact_sheet("group 3: 2 faces", [(17, None), (18, None)])))
    top = np.asarray(sheet.convert("L"))[:18]
    assert (top < 128).any(), "the title has ink"
