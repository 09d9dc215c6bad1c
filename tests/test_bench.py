"""``faceid bench`` works: every part runs in its tiny mode and prints well-formed figures.

Timing is not tested here (it is what the benchmark prints, not a property of the code)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import cli

from faceid import bench


def test_synthetic_faces_look_like_face_embeddings():
    centres, faces = bench.synthetic_faces(200, 5)
    assert faces.shape == (1000, 128) and faces.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(faces, axis=1), 1, atol=1e-5)
    same = np.mean([faces[5 * p] @ faces[5 * p + 1] for p in range(200)])
    other = np.mean([faces[5 * p] @ faces[5 * p + 5] for p in range(199)])
    assert 0.6 < same < 0.8 and abs(other) < 0.05


@pytest.mark.slow
def test_gallery_part_without_the_models(tmp_path):
    """The figures that follow from what was built, not from the clock: file sizes, recall, and
    times in the unit their name says."""
    figures = list(bench.run(["gallery"], sizes=[1000], tiny=True, workdir=tmp_path))
    index = [f for f in figures if f["figure"] == "gallery_index"]
    assert [f["index"] for f in index] == ["exact", "approximate"]
    exact, approximate = index
    assert all(f["faces"] == 1000 for f in index)
    assert 520 <= exact["bytes_per_face_file"] <= 521  # 128 float32 and one int64 id a face, and a header
    spec = approximate["spec"]
    assert spec["kind"] == "approximate"
    # the approximate index keeps the exact vectors to re-score with, and its codes on top
    assert approximate["bytes_per_face_file"] >= 520 + spec["pq_m"] * spec["pq_bits"] / 8
    assert approximate["recall_at_1_known"] >= 0.99 and approximate["top1_similarity_gap_known_max"] <= 0.01
    for f in index:  # milliseconds: a search of 1,000 faces takes microseconds to milliseconds, never 0 or seconds
        assert 0.001 <= f["search_alone_ms_median"] <= f["search_alone_ms_p95"] < 1000
    (sqlite,) = [f for f in figures if f["figure"] == "gallery_sqlite"]
    assert sqlite["faces"] == 1000 and sqlite["index"] == "exact"
    # 5 people of 5 faces enrolled and 3 people of 5 removed: the only index file holds 1,010 faces
    assert 1010 * 520 / 1000 <= sqlite["index_file_bytes_per_face"] <= 1010 * 521 / 1000
    assert len(sqlite["enrol_5_and_search_ms"]) == 5 and all(0 < t < 10_000 for t in sqlite["enrol_5_and_search_ms"])
    removals, rewrites = sqlite["remove_person_s_oldest_new_new"], sqlite["then_rewrite_s"]
    assert len(removals) == len(rewrites) == 3 and all(r > 0 for r in removals + rewrites)
    assert sqlite["db_bytes_per_face"] >= 512  # each embedding's 512 bytes are in the database
    assert sqlite["remove_person_s"] < 10 and sqlite["first_search_s"] < 10  # seconds, not milliseconds
    assert all(len(f["load"]) == 3 for f in figures)


@pytest.mark.slow
def test_cli_prints_one_json_line_per_figure():
    result = cli("bench", "--tiny", "--only", "machine,gallery")
    assert result.exit_code == 0, result.output
    figures = [json.loads(line) for line in result.stdout.splitlines()]
    assert [f["figure"] for f in figures] == ["machine"] + ["gallery_index"] * 4 + ["gallery_sqlite"] * 2
    assert [f["faces"] for f in figures[1:]] == [1000, 1000, 2000, 2000, 1000, 2000]  # --tiny: 1,000 and 2,000


def test_unknown_part_is_refused():
    result = cli("bench", "--only", "warp-drive")
    assert result.exit_code == 2 and "warp-drive" in result.output


@pytest.mark.model
def test_tiny_benchmark_runs_every_part(tmp_path, optional_data):
    figures = list(bench.run(bench.PARTS, data=optional_data, images=2, sizes=[1000], tiny=True, workdir=tmp_path))
    names = {f["figure"] for f in figures}
    assert names >= {
        "machine",
        "embedding_model",
        "embedding",
        "detection",
        "identify_warm",
        "cli_faceid",
        "cold_start",
        "ray_local",
        "ray_cluster",
    }
    if optional_data is not None and (optional_data / "video").is_dir():  # the video part needs the sample clip
        assert names >= {"video_realtime", "video_sampling", "video_watch_memory"}
        (sampling,) = [f for f in figures if f["figure"] == "video_sampling"]
        assert sampling["wrong_names"] == 0 and sampling["named_tracks"].get("Barack Obama")
        timed = [f for f in figures if f["figure"] == "video_realtime" and "skipped" not in f]
        assert timed and all(f["vs_whole_frames"]["full_every"] == 1 for f in timed)  # side by side
    assert {f["batch"] for f in figures if f["figure"] == "embedding"} == {1, 8}
    found = [f for f in figures if f["figure"] == "detector_found"]  # with ../shared/data and YuNet installed
    skipped = [f for f in figures if f["figure"] == "detectors"]  # no ../shared/data or no YuNet: said why
    assert [f["detector"] for f in found] == ["mtcnn", "yunet"] or (found == [] and skipped[0]["skipped"])
    assert all(f["bigbang_group"] == 7 and f["awkward_false"] == 0 for f in found)
    onnx = [f for f in figures if f["figure"] == "embedding_model" and f.get("runtime") == "opencv-dnn"]
    assert onnx and all(f["max_difference_from_onnxruntime"] < 1e-5 for f in onnx)  # the same embeddings
    assert {f["size"] for f in figures if f["figure"] == "detection"} == {"250x250", "640x480", "1920x1080"}
    (warm,) = [f for f in figures if f["figure"] == "identify_warm"]
    assert warm["faces"] == 1
    (cli,) = [f for f in figures if f["figure"] == "cli_faceid"]
    assert cli["photos"] >= 2 and cli["photos_without_face"] == 0
    (cold,) = [f for f in figures if f["figure"] == "cold_start"]
    assert 0 < cold["first_line_s"] <= cold["exit_s"] and cold["cpu_s"] > 0
    (load,) = [f for f in figures if f["figure"] == "serve_load"]
    assert load["errors"] == 0 and load["sigterm_exit_code"] == 0
    assert load["rounds"][0]["one_client"]["requests"] == 8 and load["rounds"][0]["eight_clients"]["requests"] == 8
    assert load["batch_workers"] == 2  # the default server runs two batches at once
    other = load["rounds"][0]["eight_clients_other_workers"]  # a second server with 1 batch worker, side by side
    assert other["workers"] == 1 and other["requests"] == 8 and other["errors"] == 0
    ceiling = load["pipeline_ceiling"]
    assert ceiling["one_at_a_time_per_s"] > 0 and ceiling["batches_of_8_two_threads_per_s"] > 0
    assert load["server_rss_mb_idle"] > 0 and load["server_rss_mb_after"] > 0
    assert "server_rss_mb_growth_after_first_round" in load
    assert 0 < load["rounds"][0]["one_client"]["server_cores_busy"] <= 2.5  # 2 cores (and /proc's ticks)
    (big,) = [f for f in figures if f["figure"] == "serve_big_photos"]
    assert big["answered_200"] == big["photos"] == 2 and big["peak_rss_mb"] >= big["idle_rss_mb"] > 0
    json.dumps(figures)  # every figure is plain JSON


@pytest.mark.slow
def test_unknown_part_runs_the_loop_in_a_real_gallery(tmp_path):
    figure, batches = bench.run(["unknown"], sizes=[1000], tiny=True, workdir=tmp_path)
    assert figure["figure"] == "unknown_loop" and figure["faces"] == 1000 and figure["new_faces"] == 100
    assert figure["bcubed_precision"] >= 0.95 and figure["groups"] > 100
    assert 0 < figure["name_biggest_group_s"] <= figure["name_and_first_search_s"] < 60
    # the same faces kept in 4 shuffled batches, grouped after each: within 0.01 of the one run
    assert batches["figure"] == "unknown_batches" and batches["faces"] == 1000 and batches["batches"] == 4
    p, r = figure["bcubed_precision"], figure["bcubed_recall"]
    assert batches["one_run_bcubed_f"] == pytest.approx(2 * p * r / (p + r), abs=2e-4)  # the loop's own one run
    assert abs(batches["f_difference"]) <= 0.01 and batches["batched_bcubed_precision"] >= 0.95
    assert len(batches["batched_group_steps_s"]) == 4
