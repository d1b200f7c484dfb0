import numpy as np
import pytest

from hode.errors import ConfigError
from hode.tiling import Tiler, cell_counts, crop, grid_shape, merge
from hode.types import Detections


def test_4k_grid_is_5_by_8_with_smaller_edge_tiles():
    tiler = Tiler(512, (96, 48))
    assert tiler.grid(2160, 3840) == (5, 8)
    tiles = tiler.tiles(2160, 3840)
    assert len(tiles) == 40
    last = tiles[-1]
    assert last.core == (3584, 2048, 3840, 2160)  # 256 x 112 px: the frame is not a multiple of 512
    assert last.window == (3584 - 48, 2048 - 96, 3840, 2160)  # padding clipped to the frame


def test_cores_partition_the_frame_and_windows_add_padding():
    H, W = 1000, 1300
    tiler = Tiler(512, (64, 32))
    cover = np.zeros((H, W), int)
    for t in tiler.tiles(H, W):
        x0, y0, x1, y1 = t.core
        cover[y0:y1, x0:x1] += 1
        wx0, wy0, wx1, wy1 = t.window
        assert wx0 == max(0, x0 - 32) and wy0 == max(0, y0 - 64)
        assert wx1 == min(W, x1 + 32) and wy1 == min(H, y1 + 64)
    assert (cover == 1).all()


def test_crop_is_a_view():
    img = np.zeros((100, 200, 3), np.uint8)
    c = crop(img, (10, 20, 50, 60))
    assert c.shape == (40, 40, 3) and np.shares_memory(c, img)


def test_pedestrian_on_split_line_is_detected_once():
    tiler = Tiler(512, (96, 48))
    H, W = 1024, 1024
    person = np.array([500.0, 300.0, 530.0, 380.0])  # straddles the vertical split at x=512
    parts = []
    for t in tiler.tiles(H, W):
        x0, y0, x1, y1 = t.window
        if person[0] >= x0 and person[2] <= x1 and person[1] >= y0 and person[3] <= y1:
            local = person - np.array([x0, y0, x0, y0])
            # each detector sees the person whole, with slightly different boxes and scores
            parts.append((Detections(local[None] + np.random.default_rng(len(parts)).normal(0, 1, 4), [0.9 - 0.1 * len(parts)]), t.window, t.core))
        else:
            parts.append((Detections(), t.window, t.core))
    assert sum(len(p[0]) for p in parts) == 2  # seen in both neighbouring tiles thanks to padding
    merged = merge(parts, H, W)
    assert len(merged) == 1
    assert np.allclose(merged.boxes[0], person, atol=4)


def test_box_cut_by_interior_border_is_dropped_when_neighbour_owns_it():
    tiler = Tiler(512, (96, 48))
    left, right = tiler.tiles(512, 1024)
    # a person at x 570..600 (owned by the right tile), cut by the left window's border at 560
    cut_in_left = Detections([[570 - left.window[0], 100, 560 - left.window[0], 160]], [0.8])
    whole_in_right = Detections([[570 - right.window[0], 100, 600 - right.window[0], 160]], [0.7])
    merged = merge([(cut_in_left, left.window, left.core), (whole_in_right, right.window, right.core)], 512, 1024)
    assert len(merged) == 1 and merged.boxes[0][2] == pytest.approx(600)


def test_merge_keeps_distinct_people_and_shifts_to_frame_coordinates():
    d = Detections([[0, 0, 10, 20], [100, 100, 110, 120]], [0.9, 0.8])
    merged = merge([(d, (50, 60, 300, 300), None)], 400, 400)
    assert np.allclose(merged.boxes, [[50, 60, 60, 80], [150, 160, 160, 180]])


def test_cell_counts_counts_centres():
    boxes = np.array([[10, 10, 20, 20], [600, 10, 610, 30], [600, 600, 620, 640]], np.float32)
    counts = cell_counts(boxes, 1024, 1024, 512)
    assert counts.tolist() == [[1, 1], [0, 1]]
    assert grid_shape(768, 1024, 512) == (2, 2)


@pytest.mark.parametrize("kw, msg", [({"tile": 0}, "tiling.tile"), ({"tile": -5}, "tiling.tile"),
                                     ({"pad": (512, 10)}, "must be smaller"), ({"pad": (-1, 0)}, "non-negative"),
                                     ({"merge_iou": 0}, "merge_iou")])
def test_bad_input_tiling_values_are_refused(kw, msg):
    with pytest.raises(ConfigError, match=msg):
        Tiler(**kw)
