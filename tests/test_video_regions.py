"""faceid.video.regions: between whole-frame searches, faces are looked for only around the tracked
ones (fake detector: a face is a coloured tile)."""

from __future__ import annotations

from conftest import FakeDetector
from videos import BLUE, RED, tile_frame

from faceid.video.regions import detect_near


def test_faces_near_tracked_boxes_are_found_and_mapped_back_even_at_the_frame_edge():
    frame = tile_frame({(0, 0): RED, (4, 2): BLUE})  # RED in the top-left corner: its region is padded
    detector = FakeDetector()
    found = detect_near(detector, frame, [(0, 0, 40, 40)])
    assert [d.box for d in found] == [(0, 0, 40, 40)] and detector.calls == 1
    assert found[0].landmarks[0] == (12.0, 15.0)  # landmarks mapped back too


def test_faces_away_from_every_track_are_left_for_the_next_whole_search():
    frame = tile_frame({(0, 0): RED, (4, 2): BLUE})
    assert detect_near(FakeDetector(), frame, [(160, 0, 40, 40)]) == []  # nothing near (160, 0)
    both = detect_near(FakeDetector(), frame, [(0, 0, 40, 40), (160, 80, 40, 40), (0, 0, 40, 40)])
    assert sorted(d.box for d in both) == [(0, 0, 40, 40), (160, 80, 40, 40)]  # one batch, no duplicate
