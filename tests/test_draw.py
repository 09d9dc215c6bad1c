"""Labels on annotated images: inside the image, never over each other (the rule the page shows too)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from faceid.draw import _overlap, layout_labels, plan_labels


def _rects(places, sizes):
    return [(x, y, x + w, y + h) for (x, y), (w, h) in zip(places, sizes)]


def test_a_label_at_the_right_edge_slides_in_rather_than_clipping():
    # a face near the right edge with a label wider than the room left (Bernadette's case)
    places = layout_labels([(1000, 100, 1060, 180)], [(170, 25)], 1140, 570)
    assert places == [(1140 - 170, 75)]


def test_two_faces_side_by_side_get_labels_that_do_not_overlap():
    # Amy and Howard's case: neighbouring faces at nearly the same height, long labels
    boxes = [(190, 146, 258, 229), (230, 150, 300, 230)]
    sizes = [(140, 25), (140, 25)]
    a, b = _rects(layout_labels(boxes, sizes, 600, 400), sizes)
    assert _overlap(a, b) == 0


@settings(max_examples=200, deadline=None)
@example(242, 159, [(0.0, 0.0, 20, 40), (0.0, 0.0, 20, 40), (0.0, 0.125, 92, 40)])  # a gap off the step grid
@given(
    st.integers(200, 1600),
    st.integers(150, 1200),
    st.lists(st.tuples(st.floats(0, 0.9), st.floats(0, 0.9), st.integers(20, 200), st.integers(40, 260)), max_size=8),
)
def test_labels_stay_inside_and_apart_when_there_is_room(width, height, faces):
    boxes, sizes = [], []
    for fx, fy, side, label in faces:
        x, y = int(fx * width), int(fy * height)
        boxes.append((x, y, min(width, x + side), min(height, y + side)))
        sizes.append((min(label, width), 20))
    places = layout_labels(boxes, sizes, width, height)
    rects = _rects(places, sizes)
    for x0, y0, x1, y1 in rects:
        assert x0 >= 0 and x1 <= width and y0 >= 0 and y1 <= height
    if sum(w * h for w, h in sizes) * 4 < width * height // 4:  # room to spare: no label covers another
        assert all(_overlap(a, b) == 0 for a, b in itertools.combinations(rects, 2))


@pytest.mark.model
@pytest.mark.shared
def test_big_bang_cast_labels_are_whole_and_apart(data, real_pipeline, tmp_path):
    """The photo that showed the bug: every label inside the image, none over another."""
    from faceid.draw import annotate
    from faceid.enroll import enroll
    from faceid.gallery import Gallery
    from faceid.identify import identify
    from faceid.images import load_image

    with Gallery(tmp_path / "g") as g:
        for photo in sorted((data / "bigbang" / "faces").iterdir()):
            enroll(g, photo.stem, [photo], real_pipeline)
        cast = data / "bigbang" / "group" / "cast.jpg"
        [result] = list(identify([cast], g, real_pipeline))
    assert sorted(f.name for f in result.faces) == ["Amy", "Bernadette", "Howard", "Leonard", "Penny", "Raj", "Sheldon"]
    pixels = load_image(cast)
    height, width = pixels.shape[:2]
    _, _, labels = plan_labels((width, height), result)  # what annotate draws
    rects = [label.rect for label in labels]
    assert all(r[0] >= 0 and r[2] <= width and r[1] >= 0 and r[3] <= height for r in rects)
    assert all(_overlap(a, b) == 0 for a, b in itertools.combinations(rects, 2))
    assert np.asarray(annotate(pixels, result)).shape == pixels.shape
