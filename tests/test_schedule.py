"""Schedulers as pure logic: the action simplex, rounding, the reward, dispatch, every baseline on
hand-made inputs (down nodes included), and every conf/scheduler option built from the real config."""
from __future__ import annotations

import numpy as np
import pytest

from hode.config import build, options
from hode.errors import ConfigError, HodeError
from hode.schedule.base import Scheduler
from hode.schedule.dispatch import accuracy_aware, in_order
from hode.schedule.elf import ElfBased, expand_boxes, merge_regions
from hode.schedule.fourk import InferFourK
from hode.schedule.greedy import Greedy
from hode.schedule.oracle import Oracle
from hode.schedule.reward import finish_spread, progress_spread, reward
from hode.schedule.salbs import SpeedAware
from hode.schedule.shares import (best_on_grid, earliest_finish_counts, largest_remainder, largest_remainder_rows,
                                  simplex_actions, simplex_size)
from hode.tiling import Tiler
from hode.types import Detections, Frame, NodeState, WorkItem

from support.config import compose_config


def node(name="n", rank=1, queue=0, speed=1.0, up=True, progress=0.0, true_speed=None) -> NodeState:
    return NodeState(name, "yolov5s", rank, queue=queue, speed=speed, up=up, progress=progress, true_speed=true_speed)


def work(counts, pixels=100) -> list[WorkItem]:
    img = np.zeros((10, 10, 3), np.uint8)
    return [WorkItem(0, k, (0, 0, pixels, 1), img, "tile", float(c)) for k, c in enumerate(counts)]


# ----- the action simplex and rounding -----------------------------------------------------------

def test_simplex_of_five_nodes_at_a_tenth_has_1001_actions_summing_to_one():
    a = simplex_actions(5, 0.1)
    assert a.shape == (1001, 5) == (simplex_size(5, 0.1), 5)
    assert np.allclose(a.sum(1), 1.0)
    assert np.allclose(a * 10, np.round(a * 10)) and a.min() >= 0
    assert len({tuple(np.round(r * 10).astype(int)) for r in a}) == 1001  # every composition once
    assert simplex_actions(2, 0.1).shape == (11, 2) and simplex_actions(1, 0.1).tolist() == [[1.0]]
    with pytest.raises(ConfigError):
        simplex_actions(3, 0.3)  # does not divide 1


def test_largest_remainder_rounding():
    assert largest_remainder([0.5, 0.3, 0.2], 7).tolist() == [4, 2, 1]  # quotas 3.5 2.1 1.4: the .5 gets the unit
    assert largest_remainder([1, 1, 1], 4).tolist() == [2, 1, 1]  # ties go to the earlier node
    assert largest_remainder([0.0, 1.0], 5).tolist() == [0, 5]
    assert largest_remainder([0.2, 0.2, 0.6], 0).tolist() == [0, 0, 0]
    rng = np.random.default_rng(0)
    for _ in range(50):
        s, n = rng.random(5), int(rng.integers(0, 60))
        c = largest_remainder(s, n)
        assert c.sum() == n and np.all(np.abs(c - s / s.sum() * n) < 1)
    with pytest.raises(ConfigError):
        largest_remainder([0, 0], 3)
    grid = simplex_actions(5, 0.1)  # all rows at once, as best_on_grid rounds them
    for n in (0, 1, 7, 23, 40):
        assert (largest_remainder_rows(grid, n) == np.stack([largest_remainder(a, n) for a in grid])).all()


def test_earliest_finish_counts_fill_the_queues_level():
    assert earliest_finish_counts(3, [0, 0], [2, 1]).tolist() == [2, 1]
    # node 0 holds 4 items at 2/s (done at 2 s): node 1 takes items until it would finish later
    assert earliest_finish_counts(3, [4, 0], [2, 1]).tolist() == [1, 2]
    assert earliest_finish_counts(4, [0, 0, 0], [1, 5, 1], up=[True, False, True]).tolist() == [2, 0, 2]
    with pytest.raises(HodeError):
        earliest_finish_counts(1, [0], [1], up=[False])


def test_best_on_grid_is_the_best_share_vector_and_can_be_worse_than_exact_counts():
    grid = simplex_actions(2, 0.1)
    # speeds 3:1, 8 tiles: shares 0.7/0.3 round to 6/2 (finish 2.0 s and 2.0 s), the exact optimum too
    assert best_on_grid(grid, 8, [0, 0], [3, 1]).tolist() == [6, 2] == earliest_finish_counts(8, [0, 0], [3, 1]).tolist()
    # speeds 1:1, 3 tiles: every share rounds 3 tiles as 3/0, 2/1 or 1/2; the best is 2/1 (finish 2 s)
    assert sorted(best_on_grid(grid, 3, [0, 0], [1, 1]).tolist()) == [1, 2]
    # three equal nodes, 20 tiles: exact counts 7/7/6 finish at 7 s, but 7/20 = 0.35 is not on the
    # 0.1 grid: the best grid actions (8/6/6, 4/8/8, ...) finish at 8 s
    three = simplex_actions(3, 0.1)
    assert sorted(earliest_finish_counts(20, [0] * 3, [1] * 3).tolist()) == [6, 7, 7]
    c = best_on_grid(three, 20, [0] * 3, [1] * 3)
    assert c.sum() == 20 and c.max() == 8
    # with queues, the grid point levels the finish times as well as it can: node 0 holds 10
    assert best_on_grid(three, 20, [10, 0, 0], [1, 1, 1]).tolist() == [0, 10, 10]
    five = simplex_actions(5, 0.1)
    # a down node gets nothing
    assert best_on_grid(five, 10, [0] * 5, [1] * 5, up=[True, False, True, True, True])[1] == 0


# ----- the reward (eqs. 5-7) ---------------------------------------------------------------------

def test_reward_on_hand_computed_cases():
    before = [node(queue=4, speed=2, progress=0.0), node(queue=0, speed=1, progress=1.0)]
    after = [node(queue=2, speed=2, progress=0.5), node(queue=1, speed=1, progress=0.5)]
    # progress: (0-.5)^2 + (1-.5)^2 = 0.5 -> 0; finish times q/v: [2, 0] -> 2.0, [1, 1] -> 0
    assert progress_spread(before) == pytest.approx(0.5) and finish_spread(before) == pytest.approx(2.0)
    assert reward(before, after, lambda1=1.0, lambda2=2.0) == pytest.approx(0.5 + 4.0)
    assert reward(after, before, lambda1=1.0, lambda2=2.0) == pytest.approx(-4.5)  # more unbalanced: negative
    # three nodes, sums not means: q/v = [1, 2, 6] -> mean 3 -> 4 + 1 + 9 = 14
    three = [node(queue=1, speed=1), node(queue=4, speed=2), node(queue=6, speed=1)]
    assert finish_spread(three) == pytest.approx(14.0)
    # a down node takes no part
    three[2].up = False
    assert finish_spread(three) == pytest.approx(0.5)


# ----- dispatch ----------------------------------------------------------------------------------

def test_accuracy_aware_dispatch_sends_the_most_crowded_tiles_to_the_largest_model():
    nodes = [node("n", rank=0), node("m", rank=2), node("s", rank=1)]
    items = work([1, 5, 3, 0])
    # counts: n 1, m 2, s 1 -> m takes the 5 and the 3, s the 1, n the empty tile
    assert accuracy_aware(items, [1, 2, 1], nodes) == [2, 1, 1, 0]
    assert in_order(items, [1, 2, 1], nodes) == [0, 1, 1, 2]
    with pytest.raises(HodeError):
        accuracy_aware(items, [1, 1, 1], nodes)  # counts do not cover the items
    nodes[1].up = False
    with pytest.raises(HodeError):
        accuracy_aware(items, [1, 2, 1], nodes)  # work for a down node


# ----- baselines ---------------------------------------------------------------------------------

def test_salbs_counts_follow_measured_speed_and_skip_down_nodes():
    s = SpeedAware()
    assert s.assign(work([0] * 8), [node(speed=3), node(speed=1)]) == [0] * 6 + [1] * 2
    assert s.assign(work([0] * 4), [node(speed=3), node(speed=1, up=False), node(speed=1)]) == [0, 0, 0, 2]


def test_greedy_puts_each_item_where_it_finishes_first_most_crowded_first():
    g = Greedy()
    nodes = [node(queue=0, speed=1), node(queue=2, speed=1)]
    # order 9, 5, 1, 0: node 0 finishes at 1, 2, 3 (tie with node 1 at 3 -> node 0), then node 1
    assert g.assign(work([0, 9, 5, 1]), nodes) == [1, 0, 0, 0]
    nodes[0].up = False
    assert g.assign(work([0, 9]), nodes) == [1, 1]


def test_oracle_uses_true_speed_and_true_counts():
    o = Oracle()
    nodes = [node("small", rank=0, speed=1, true_speed=3), node("large", rank=1, speed=1, true_speed=1)]
    # true speeds 3:1 -> 3 and 1 tiles; the most crowded tile goes to the large model
    assert o.assign(work([0, 2, 7, 1]), nodes) == [0, 0, 1, 0]
    nodes[0].true_speed = None  # outside the simulator: the measured speed
    assert sorted(np.bincount(o.assign(work([0, 2, 7, 1]), nodes))) == [2, 2]
    img = np.zeros((100, 200, 3), np.uint8)
    gt = Detections([[10, 10, 20, 40], [12, 10, 22, 40], [150, 60, 160, 90]], [1, 1, 1])
    tiler = Tiler(tile=100, pad=(0, 0))
    items = o.work(Frame(0, img, gt), tiler, np.ones((1, 2), bool), np.zeros((1, 2)), Detections())
    assert [it.count for it in items] == [2.0, 1.0]  # truth, not the (zero) counts it was given


def test_oracle_grid_picks_the_best_share_vector_on_the_dqns_grid():
    # true speeds 3:1, 8 tiles: the exact best [6, 2] (done at t=2) is on the 0.25 grid ...
    nodes = [node("small", rank=0, speed=1, true_speed=3), node("large", rank=1, speed=1, true_speed=1)]
    assert np.bincount(Oracle().assign(work([0] * 8), nodes), minlength=2).tolist() == [6, 2]
    assert np.bincount(Oracle(step=0.25).assign(work([0] * 8), nodes), minlength=2).tolist() == [6, 2]
    # ... not on the 0.5 grid, whose best is all on the fast node (t=8/3; half and half: t=4)
    assert np.bincount(Oracle(step=0.5).assign(work([0] * 8), nodes), minlength=2).tolist() == [8, 0]
    three = [node("a", true_speed=3), node("b", true_speed=1), node("c", true_speed=1)]
    assert np.bincount(Oracle().assign(work([0] * 5), three), minlength=3).tolist() == [3, 1, 1]  # t=1
    assert np.bincount(Oracle(step=0.5).assign(work([0] * 5), three), minlength=3).tolist() == [5, 0, 0]  # t=5/3
    assert Oracle(step=0.5).assign(work([0] * 5), three) == Oracle(step=0.5).assign(work([0] * 5), three)


def test_fourk_sends_whole_frames_by_smooth_weighted_round_robin():
    f = InferFourK(power={"a": 2, "b": 1})
    assert f.uses_filter is False
    img = np.zeros((90, 160, 3), np.uint8)
    items = f.work(Frame(3, img), Tiler(tile=64, pad=(0, 0)), np.ones((2, 3), bool), np.zeros((2, 3)), Detections())
    assert len(items) == 1 and items[0].kind == "frame" and items[0].window == (0, 0, 160, 90)
    nodes = [node("a"), node("b")]
    picks = [f.assign(items, nodes)[0] for _ in range(6)]
    assert picks == [0, 1, 0, 0, 1, 0]  # 2:1, interleaved
    nodes[0].up = False
    assert [f.assign(items, nodes)[0] for _ in range(3)] == [1, 1, 1]
    m = InferFourK()  # measured speed as the power
    assert np.bincount([m.assign(items, [node("a", speed=3), node("b", speed=1)])[0] for _ in range(8)]).tolist() == [6, 2]
    with pytest.raises(ConfigError):
        InferFourK(power={"a": 0})


def test_elf_regions_are_expanded_boxes_merged_until_disjoint():
    b = expand_boxes(np.array([[10, 10, 20, 30]]), 0.3, 100, 100)
    assert b.tolist() == [[8.5, 7.0, 21.5, 33.0]]  # 30% wider and taller about the centre
    assert expand_boxes(np.array([[0, 0, 10, 10]]), 0.3, 100, 100)[0, :2].tolist() == [0, 0]  # clipped
    # A and B overlap; their union then overlaps C; D is far away
    regions = merge_regions(np.array([[0, 0, 10, 10], [8, 0, 20, 10], [19, 9, 30, 20], [50, 50, 60, 60]]))
    assert sorted(map(tuple, regions.tolist())) == [(0, 0, 30, 20), (50, 50, 60, 60)]


def test_elf_work_crops_last_boxes_and_falls_back_to_all_tiles():
    e = ElfBased()
    img = np.zeros((200, 300, 3), np.uint8)
    tiler = Tiler(tile=100, pad=(0, 0))
    first = e.work(Frame(0, img), tiler, np.ones((2, 3), bool), np.zeros((2, 3)), Detections())
    assert len(first) == 6 and {it.kind for it in first} == {"tile"}
    last = Detections([[10, 10, 50, 90], [40, 20, 60, 80], [200, 100, 240, 180]], [0.9, 0.9, 0.9])
    crops = e.work(Frame(1, img), tiler, np.ones((2, 3), bool), np.zeros((2, 3)), last)
    assert len(crops) == 2 and {it.kind for it in crops} == {"crop"}
    assert sorted(it.count for it in crops) == [1.0, 2.0]
    for it in crops:
        x0, y0, x1, y1 = it.window
        assert it.crop.shape[:2] == (y1 - y0, x1 - x0)
    # crops by pixels in proportion to speed, largest first: 100 and 50+50 on equal nodes
    sized = [WorkItem(1, k, (0, 0, w, 1), img, "crop") for k, w in enumerate((50, 100, 50))]
    assert e.assign(sized, [node(), node()]) == [1, 0, 1]
    assert e.assign(sized, [node(speed=3), node(speed=1)]) == [0, 0, 1]  # 150 of 200 pixels to the 3x node


@pytest.mark.parametrize("sched", [SpeedAware(), Greedy(), Oracle(), Oracle(step=0.1), InferFourK(), ElfBased()])
def test_every_scheduler_refuses_when_no_node_is_up(sched):
    with pytest.raises(HodeError, match="no edge node is up"):
        sched.assign(work([1, 2]), [node(up=False), node(up=False)])


# ----- config ------------------------------------------------------------------------------------

@pytest.mark.parametrize("option", options("scheduler"))
def test_every_scheduler_option_builds_from_the_composed_config(option):
    for topology in ("local2", "paper5"):
        cfg = compose_config([f"scheduler={option}", f"topology={topology}"])
        s = build(cfg.scheduler)
        assert isinstance(s, Scheduler) and s.name == option
        topo = build(cfg.topology)
        nodes = [NodeState(n.name, n.model, n.rank, queue=i, speed=10.0 + i) for i, n in enumerate(topo)]
        out = s.assign(work([3, 0, 1, 2, 5, 0, 0, 1]), nodes)  # the dqn option loads its shipped checkpoint here
        assert len(out) == 8 and all(0 <= a < len(topo) for a in out)
