import numpy as np
import pytest

from hode.data.synthetic import SyntheticCrowd
from hode.errors import ConfigError
from hode.tiling import cell_counts


@pytest.fixture(scope="module")
def clip():
    return list(SyntheticCrowd(width=1920, height=1080, frames=6, seed=5))


def test_deterministic_for_a_seed(clip):
    again = list(SyntheticCrowd(width=1920, height=1080, frames=6, seed=5))
    for a, b in zip(clip, again):
        assert np.array_equal(a.image, b.image)
        assert np.array_equal(a.gt.boxes, b.gt.boxes) and np.array_equal(a.gt.ids, b.gt.ids)
    other = next(iter(SyntheticCrowd(width=1920, height=1080, frames=1, seed=6)))
    assert not np.array_equal(other.image, clip[0].image)


def test_frames_and_ground_truth_are_well_formed(clip):
    assert len(clip) == 6 and [f.index for f in clip] == list(range(6))
    for f in clip:
        assert f.image.shape == (1080, 1920, 3) and f.image.dtype == np.uint8
        b = f.gt.boxes
        assert len(b) > 30
        assert (b[:, 0] >= 0).all() and (b[:, 2] <= 1920).all() and (b[:, 1] >= 0).all() and (b[:, 3] <= 1080).all()
        assert (b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all()
        assert len(np.unique(f.gt.ids)) == len(f.gt.ids)
        assert f.gt.ignore.dtype == bool


def test_perspective_people_grow_towards_the_camera():
    f = next(iter(SyntheticCrowd(frames=1, seed=2)))  # 4K preset
    b = f.gt.boxes[~f.gt.ignore]
    full = (b[:, 1] > 0) & (b[:, 3] < 2160)
    h, foot = (b[:, 3] - b[:, 1])[full], b[full, 3]
    assert np.corrcoef(h, foot)[0, 1] > 0.95
    assert h.min() < 35 and h.max() > 100  # far 10-30 px, near 100-250 px


def test_temporal_coherence_people_move_a_few_pixels(clip):
    a, b = clip[0].gt, clip[1].gt
    common, ia, ib = np.intersect1d(a.ids, b.ids, return_indices=True)
    assert len(common) > 20
    shift = np.abs(a.centers()[ia] - b.centers()[ib]).max(axis=1)
    assert np.median(shift) < 5 and shift.max() < 20


def test_people_enter_and_leave():
    frames = list(SyntheticCrowd(width=960, height=540, frames=12, every=30, seed=1))
    first, last = set(frames[0].gt.ids.tolist()), set(frames[-1].gt.ids.tolist())
    assert first - last and last - first


def test_background_regions_leave_many_tiles_empty():
    f = next(iter(SyntheticCrowd(frames=1, seed=0)))
    counts = cell_counts(f.gt.boxes, 2160, 3840, 512)
    assert counts[0].sum() == 0  # sky and buildings: nobody walks there
    assert (counts == 0).mean() >= 0.3


def test_occlusion_is_marked_as_ignore():
    f = next(iter(SyntheticCrowd(frames=1, seed=0, density=2.0)))
    assert f.gt.ignore.any() and not f.gt.ignore.all()


def test_every_and_start_pick_the_same_frames():
    a = list(SyntheticCrowd(width=640, height=480, frames=3, every=2, seed=4))
    b = list(SyntheticCrowd(width=640, height=480, frames=6, seed=4))
    assert np.array_equal(a[1].image, b[2].image)
    c = list(SyntheticCrowd(width=640, height=480, frames=2, start=4, seed=4))
    assert np.array_equal(c[0].gt.boxes, b[4].gt.boxes)


@pytest.mark.parametrize("kw", [{"frames": 0}, {"width": 10}, {"fps": 0}, {"density": -1},
                                {"far_height": 300, "near_height": 100}, {"every": 0}])
def test_bad_input_synthetic_parameters(kw):
    with pytest.raises(ConfigError):
        SyntheticCrowd(**kw)
