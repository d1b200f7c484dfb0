"""Synthetic crowded surveillance video with exact ground truth (PANDA cannot be downloaded here).

What matters to HODE is reproduced on purpose:

- perspective: a pedestrian's height grows linearly with the y of their feet, from ``far_height``
  at the top of the walkable ground to ``near_height`` at the bottom of the frame;
- temporal coherence: people walk along paths at about 0.8 body heights per second, so the same
  person moves a few pixels per frame; they come in groups, enter and leave the frame;
- occlusion: people are drawn far to near, so near people hide far ones; ground truth keeps the
  full-body box of everyone, and people less than ``min_visible`` visible are marked ``ignore``
  (scored like PANDA's crowd regions: neither hit nor miss);
- background: sky, buildings and water where nobody ever walks, so many tiles are empty, plus
  lamp posts and trees as distractors.

The scene layout (paths, buildings, water) is drawn from ``seed``: another seed is another scene,
which is how detector training and evaluation keep held-out data apart.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import cv2
import numpy as np

from hode.data import limits
from hode.errors import ConfigError, check
from hode.types import Detections, Frame

WALK_HEIGHTS_PER_S = 0.8  # 1.4 m/s for a 1.7 m person
SHIRTS = np.array([[40, 40, 200], [200, 60, 40], [40, 160, 40], [30, 200, 230], [200, 200, 200],
                   [60, 60, 60], [180, 80, 160], [20, 120, 240], [150, 150, 40], [240, 240, 240],
                   [90, 40, 120], [30, 30, 30]], np.int32)
PANTS = np.array([[30, 30, 30], [90, 60, 40], [120, 110, 100], [40, 40, 80], [20, 20, 20]], np.int32)
SKIN = np.array([[140, 170, 220], [100, 130, 180], [60, 90, 140], [170, 195, 235]], np.int32)


@dataclass
class _Layout:
    ground_top: int  # y where the walkable ground starts (buildings above)
    water: tuple[int, int, int, int]  # x0, y0, x1, y1 (nobody walks there)
    paths: list[np.ndarray]  # polylines (K, 2) in pixels, feet positions
    props: list[tuple[str, int, int, int]]  # (kind, x, y_foot, height)
    background: np.ndarray = field(repr=False)


@dataclass
class _People:
    path: np.ndarray
    dist: np.ndarray  # distance walked along the path, in path-parameter units (pixels of path)
    speed: np.ndarray  # multiplier on the walking speed
    lateral: np.ndarray  # offset across the path, in body heights
    ids: np.ndarray
    shirt: np.ndarray
    pants: np.ndarray
    skin: np.ndarray
    phase: np.ndarray


class SyntheticCrowd:
    """``dataset=synthetic``: a deterministic crowd video; iterating yields :class:`Frame`."""

    def __init__(self, width: int = 3840, height: int = 2160, frames: int = 30, fps: float = 30.0,
                 seed: int = 0, density: float = 1.0, far_height: int = 14, near_height: int = 220,
                 min_visible: float = 0.3, start: int = 0, every: int = 1, noise: float = 3.0) -> None:
        check(isinstance(width, int) and isinstance(height, int) and width >= 64 and height >= 64,
              f"dataset width/height must be integers >= 64, got {width}x{height}")
        limits.check_pixels((width, height), "dataset.width x dataset.height", ConfigError)
        check(isinstance(frames, int) and frames > 0, f"dataset.frames must be a positive integer, got {frames!r}")
        check(fps > 0, f"dataset.fps must be > 0, got {fps!r}")
        check(density >= 0, f"dataset.density must be >= 0, got {density!r}")
        check(0 < far_height <= near_height, f"dataset far_height/near_height must satisfy 0 < far <= near, got {far_height}/{near_height}")
        check(isinstance(start, int) and start >= 0, f"dataset.start must be a non-negative integer, got {start!r}")
        check(isinstance(every, int) and every >= 1, f"dataset.every must be a positive integer, got {every!r}")
        self.width, self.height, self.frames, self.fps = width, height, frames, float(fps)
        self.seed, self.density, self.min_visible, self.noise = seed, density, min_visible, noise
        self.start, self.every = start, every
        self.far_height, self.near_height = far_height, near_height
        self.name = f"synthetic-{width}x{height}-s{seed}"

    def __len__(self) -> int:
        return self.frames

    # ----- scene ------------------------------------------------------------------------------

    def _height_at(self, y: np.ndarray, ground_top: int) -> np.ndarray:
        t = np.clip((y - ground_top) / max(1, self.height - ground_top), 0, 1)
        return self.far_height + (self.near_height - self.far_height) * t

    def _layout(self, rng: np.random.Generator) -> _Layout:
        W, H = self.width, self.height
        ground_top = int(H * rng.uniform(0.30, 0.40))
        bg = np.empty((H, W, 3), np.uint8)
        # sky: vertical gradient
        sky = np.linspace([235, 200, 170], [250, 235, 215], ground_top).astype(np.uint8)
        bg[:ground_top] = sky[:, None, :]
        # buildings: blocks standing on the ground line, with window grids
        x = 0
        while x < W:
            bw = int(rng.uniform(0.05, 0.14) * W)
            top = int(ground_top * rng.uniform(0.05, 0.7))
            color = rng.integers(70, 190, 3)
            cv2.rectangle(bg, (x, top), (x + bw, ground_top), color.tolist(), -1)
            win = max(4, int(0.012 * H))
            for wy in range(top + win, ground_top - win, 3 * win):
                for wx in range(x + win, x + bw - win, 2 * win):
                    lit = rng.random() < 0.3
                    cv2.rectangle(bg, (wx, wy), (wx + win, wy + int(1.5 * win)),
                                  (120, 210, 240) if lit else (60, 50, 40), -1)
            x += bw + int(rng.uniform(0, 0.02) * W)
        # ground: paving with seams
        ground = np.array([150, 160, 170]) + rng.integers(-20, 20, 3)
        bg[ground_top:] = ground.astype(np.uint8)
        for y in range(ground_top, H, max(8, H // 40)):
            cv2.line(bg, (0, y), (W, y), (ground - 25).tolist(), max(1, H // 1000))
        # water: a band on one side of the ground where nobody walks
        wx0 = 0 if rng.random() < 0.5 else int(W * rng.uniform(0.55, 0.7))
        wx1 = wx0 + int(W * rng.uniform(0.28, 0.42))
        wy0 = ground_top + int((H - ground_top) * rng.uniform(0.0, 0.3))
        wy1 = min(H, wy0 + int((H - ground_top) * rng.uniform(0.35, 0.6)))
        water = (wx0, wy0, min(W, wx1), wy1)
        bg[wy0:wy1, wx0:water[2]] = (150, 100, 40)
        ripples = rng.integers(0, 30, (wy1 - wy0, water[2] - wx0, 1), dtype=np.uint8)
        bg[wy0:wy1, wx0:water[2]] = cv2.add(bg[wy0:wy1, wx0:water[2]], np.repeat(ripples, 3, axis=2))
        paths = self._paths(rng, ground_top, water)
        props = []
        for _ in range(int(12 * W / 3840)):
            px, py = int(rng.uniform(0, W)), int(rng.uniform(ground_top + 5, H))
            if not _in_box(px, py, water):
                props.append(("lamp" if rng.random() < 0.6 else "tree", px, py,
                              int(self._height_at(np.array(py), ground_top) * rng.uniform(1.3, 2.2))))
        for kind, px, py, h in props:  # static: draw once into the background
            if kind == "lamp":
                cv2.rectangle(bg, (px - max(1, h // 40), py - h), (px + max(1, h // 40), py), (40, 40, 40), -1)
                cv2.circle(bg, (px, py - h), max(2, h // 15), (200, 230, 240), -1)
            else:
                cv2.rectangle(bg, (px - max(1, h // 25), py - h // 2), (px + max(1, h // 25), py), (30, 60, 90), -1)
                cv2.circle(bg, (px, py - int(0.65 * h)), max(3, h // 4), (40, 110, 50), -1)
        return _Layout(ground_top, water, paths, props, bg)

    def _paths(self, rng: np.random.Generator, ground_top: int, water) -> list[np.ndarray]:
        W, H = self.width, self.height
        paths = []
        n_cross = 3 + int(rng.integers(0, 3))
        for _ in range(n_cross):  # left <-> right at some depth
            y = rng.uniform(ground_top + 0.03 * H, H * 0.97)
            ys = y + np.cumsum(rng.normal(0, 0.01 * H, 6))
            pts = np.stack([np.linspace(-0.05 * W, 1.05 * W, 6), np.clip(ys, ground_top + 5, H - 1)], 1)
            paths.append(pts if rng.random() < 0.5 else pts[::-1].copy())
        for _ in range(2 + int(rng.integers(0, 2))):  # bottom edge -> far ground (near people)
            x0, x1 = rng.uniform(0.1, 0.9, 2) * W
            pts = np.stack([np.linspace(x0, x1, 5), np.linspace(H * 1.08, ground_top + 0.02 * H, 5)], 1)
            paths.append(pts if rng.random() < 0.5 else pts[::-1].copy())
        # detour paths around the water so nobody walks on it
        out = []
        for p in paths:
            p = p.copy()
            for i, (px, py) in enumerate(p):
                if _in_box(px, py, water):
                    p[i, 1] = water[1] - 4 if py - water[1] < water[3] - py else water[3] + 4
            out.append(p)
        return out

    # ----- people -----------------------------------------------------------------------------

    def _spawn(self, rng: np.random.Generator, layout: _Layout, n_groups: int, next_id: int,
               anywhere: bool) -> tuple[list[dict], int]:
        new = []
        for _ in range(n_groups):
            k = int(rng.integers(0, len(layout.paths)))
            size = int(rng.choice([1, 1, 1, 2, 2, 3, 4, 6]))
            lengths = _path_lengths(layout.paths[k])
            d0 = rng.uniform(0, lengths[-1]) if anywhere else 0.0
            speed = rng.uniform(0.7, 1.3)
            stand = rng.random() < 0.15  # some groups stand and chat
            for j in range(size):
                new.append(dict(path=k, dist=d0, speed=0.0 if stand else speed,
                                lateral=rng.normal(0, 1.2) + 0.6 * j, gap=rng.uniform(0, 0.8) * j,
                                id=next_id, shirt=int(rng.integers(len(SHIRTS))), pants=int(rng.integers(len(PANTS))),
                                skin=int(rng.integers(len(SKIN))), phase=rng.uniform(0, 2 * np.pi)))
                next_id += 1
        return new, next_id

    def _simulate(self) -> Iterator[tuple[int, _Layout, list[dict]]]:
        """Yield (frame index, layout, people) for every frame from 0, deterministically."""
        rng = np.random.default_rng(self.seed)
        layout = self._layout(rng)
        target = self.density * 220 * (self.width * self.height) / (3840 * 2160)
        avg_group = 2.4
        people, next_id = self._spawn(rng, layout, int(target / avg_group), 1, anywhere=True)
        lengths = [_path_lengths(p) for p in layout.paths]
        t = 0
        while True:
            yield t, layout, people
            t += 1
            alive = []
            for p in people:
                if p["speed"] > 0:
                    # body heights per frame converted to path pixels via the local height
                    x, y = _point_at(layout.paths[p["path"]], lengths[p["path"]], p["dist"])
                    h = float(self._height_at(np.array(y), layout.ground_top))
                    p["dist"] += p["speed"] * WALK_HEIGHTS_PER_S * h / self.fps
                    p["phase"] += 2 * np.pi * 1.8 * p["speed"] / self.fps
                if p["dist"] - p["gap"] * 50 < lengths[p["path"]][-1]:
                    alive.append(p)
            people = alive
            deficit = target - len(people)
            if deficit > 0 and rng.random() < min(1.0, deficit / 20):
                more, next_id = self._spawn(rng, layout, 1, next_id, anywhere=False)
                people += more

    def _place(self, layout: _Layout, people: list[dict]) -> np.ndarray:
        """Rows of (x_foot, y_foot, h, person index) for everyone, sorted far to near."""
        rows = []
        for i, p in enumerate(people):
            path = layout.paths[p["path"]]
            x, y = _point_at(path, _path_lengths(path), p["dist"] - p["gap"] * 50)
            h = float(self._height_at(np.array(y), layout.ground_top))
            x += p["lateral"] * 0.45 * h
            y += 0.15 * p["lateral"] * h * 0.2
            if _in_box(x, y, layout.water) or y < layout.ground_top:
                continue
            rows.append((x, y, float(self._height_at(np.array(y), layout.ground_top)), i))
        rows = np.array(rows, np.float64).reshape(-1, 4)
        return rows[np.argsort(rows[:, 1], kind="stable")]

    def _render(self, layout: _Layout, people: list[dict], rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        img = layout.background.copy()
        for x, y, h, i in rows:
            _draw_person(img, x, y, h, people[int(i)])
        if self.noise > 0:
            small = rng.normal(0, self.noise, (self.height // 4 + 1, self.width // 4 + 1, 1)).astype(np.float32)
            n = cv2.resize(small, (self.width, self.height), interpolation=cv2.INTER_NEAREST)
            img = cv2.add(img.astype(np.int16), np.repeat(n[:, :, None], 3, axis=2).astype(np.int16), dtype=cv2.CV_16S)
            img = np.clip(img, 0, 255).astype(np.uint8)
        return img

    def _ground_truth(self, people: list[dict], rows: np.ndarray) -> Detections:
        W, H = self.width, self.height
        if not len(rows):
            return Detections(ids=np.zeros(0, np.int64), ignore=np.zeros(0, bool))
        x, y, h = rows[:, 0], rows[:, 1], rows[:, 2]
        w = 0.42 * h
        full = np.stack([x - w / 2, y - h, x + w / 2, y], 1)
        clipped = np.clip(full, 0, [W, H, W, H])
        area = (full[:, 2] - full[:, 0]) * (full[:, 3] - full[:, 1])
        carea = np.clip(clipped[:, 2] - clipped[:, 0], 0, None) * np.clip(clipped[:, 3] - clipped[:, 1], 0, None)
        in_frame = carea >= 0.5 * area  # half out of the frame: not annotated, as in MOT/PANDA
        visible = _visible_fraction(clipped, W, H)
        ids = np.array([people[int(i)]["id"] for i in rows[:, 3]], np.int64)
        keep = in_frame
        return Detections(clipped[keep], np.ones(int(keep.sum()), np.float32), ids=ids[keep],
                          ignore=(visible < self.min_visible)[keep])

    def _selected(self) -> Iterator[tuple[int, _Layout, list[dict]]]:
        """(output index, layout, people) of the frames ``start``/``every``/``frames`` select."""
        for t, layout, people in self._simulate():
            k, rem = divmod(t - self.start, self.every)
            if t < self.start or rem:
                continue  # simulated but not rendered: cheap
            if k >= self.frames:
                return
            yield k, layout, people

    def gt_frames(self) -> Iterator[Detections]:
        """Ground truth of the same frames as iterating, without rendering images (fast: the flow
        filter trains on thousands of count matrices, not pixels)."""
        for _, layout, people in self._selected():
            yield self._ground_truth(people, self._place(layout, people))

    def __iter__(self) -> Iterator[Frame]:
        for k, layout, people in self._selected():
            rows = self._place(layout, people)
            image = self._render(layout, people, rows, np.random.default_rng((self.seed, self.start + k * self.every)))  # noise of this frame alone
            yield Frame(k, image, self._ground_truth(people, rows))


def _in_box(x: float, y: float, box) -> bool:
    return box[0] <= x < box[2] and box[1] <= y < box[3]


def _path_lengths(path: np.ndarray) -> np.ndarray:
    seg = np.linalg.norm(np.diff(path, axis=0), axis=1)
    return np.concatenate([[0.0], np.cumsum(seg)])


def _point_at(path: np.ndarray, lengths: np.ndarray, d: float) -> tuple[float, float]:
    d = float(np.clip(d, 0, lengths[-1]))
    return float(np.interp(d, lengths, path[:, 0])), float(np.interp(d, lengths, path[:, 1]))


def _draw_person(img: np.ndarray, x: float, y: float, h: float, p: dict) -> None:
    """A small articulated figure whose full-body box is exactly (x +- 0.21h, y - h .. y)."""
    shirt = SHIRTS[p["shirt"]].tolist()
    pants = PANTS[p["pants"]].tolist()
    skin = SKIN[p["skin"]].tolist()
    swing = 0.07 * h * np.sin(p["phase"]) if p["speed"] > 0 else 0.0
    def r(x0, y0, x1, y1, c):  # noqa: E306
        cv2.rectangle(img, (int(round(x0)), int(round(y0))), (int(round(x1)), int(round(y1))), c, -1)
    leg_w = 0.085 * h
    r(x - 0.1 * h + swing - leg_w / 2, y - 0.47 * h, x - 0.1 * h + swing + leg_w / 2, y, pants)
    r(x + 0.1 * h - swing - leg_w / 2, y - 0.47 * h, x + 0.1 * h - swing + leg_w / 2, y, pants)
    r(x - 0.16 * h, y - 0.82 * h, x + 0.16 * h, y - 0.45 * h, shirt)  # torso
    arm = 0.05 * h
    r(x - 0.21 * h, y - 0.8 * h - swing * 0.3, x - 0.21 * h + arm, y - 0.5 * h - swing * 0.3, shirt)
    r(x + 0.21 * h - arm, y - 0.8 * h + swing * 0.3, x + 0.21 * h, y - 0.5 * h + swing * 0.3, shirt)
    hr = max(1, int(round(0.085 * h)))
    head = (int(round(x)), int(round(y - 0.9 * h)))
    if p["id"] % 2:  # dark hair on half of the people
        cv2.circle(img, (head[0], head[1] - max(1, hr // 3)), hr, (20, 20, 30), -1)
    cv2.circle(img, head, hr, skin, -1)


def _visible_fraction(boxes: np.ndarray, width: int, height: int, scale: int = 4) -> np.ndarray:
    """Fraction of each box not covered by boxes drawn after it (boxes sorted far to near)."""
    owner = np.full((height // scale + 1, width // scale + 1), -1, np.int32)
    b = (boxes / scale).astype(int)
    for i, (x0, y0, x1, y1) in enumerate(b):
        owner[y0:max(y1, y0 + 1), x0:max(x1, x0 + 1)] = i
    seen = np.bincount(owner[owner >= 0].ravel(), minlength=len(b))
    area = np.maximum(1, (np.maximum(b[:, 2], b[:, 0] + 1) - b[:, 0]) * (np.maximum(b[:, 3], b[:, 1] + 1) - b[:, 1]))
    return seen / area
