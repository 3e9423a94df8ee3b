"""Read a ToyWorld scene from pixels: colour classes, blobs, and table coordinates through the camera.

Colours: a lookup table from quantised RGB (32 levels per channel) to a class (an object, the plate, the
bin or "other"), fitted on rendered frames of all five environments against MuJoCo's segmentation
(`fit_colour_table`), smoothed over neighbouring colours so a slightly off colour (a dream) still reads.
The fitted table ships as `pixel_colours.npz` next to this file.

Geometry: the front camera's pinhole model (CAMERA_POS looking at CAMERA_TARGET, vertical fovy), so a
pixel's ray can be cut with a horizontal plane (a resting object's centre, the plate top) or with the
vertical line above a known point (how high a lifted object is). Works at any square or rectangular size.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dreamgen.toyworld.scene import CAMERA_FOVY, CAMERA_POS, CAMERA_TARGET, OBJECT_NAMES

CLASSES = ("other", *OBJECT_NAMES, "plate", "bin")
CLASS_ID = {name: i for i, name in enumerate(CLASSES)}
LEVELS = 32  # quantisation levels per RGB channel
COLOUR_TABLE_PATH = Path(__file__).with_name("pixel_colours.npz")
TABLE_X_LIMIT = 0.295  # |x| beyond this is outside where objects can be (the distractors stand there)


# ----- camera ------------------------------------------------------------------------------------
def _camera_axes() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    fwd = (CAMERA_TARGET - CAMERA_POS) / np.linalg.norm(CAMERA_TARGET - CAMERA_POS)
    x = np.array([1.0, 0.0, 0.0])
    y = np.cross(-fwd, x)
    return x, y / np.linalg.norm(y), fwd


def pixel_rays(rows: np.ndarray, cols: np.ndarray, height: int, width: int) -> np.ndarray:
    """Unit-free ray directions (N, 3) in world coordinates through pixel centres (row, col)."""
    x, y, fwd = _camera_axes()
    f = (height / 2) / np.tan(np.deg2rad(CAMERA_FOVY) / 2)
    u = (np.asarray(cols, dtype=np.float64) + 0.5 - width / 2) / f
    v = -(np.asarray(rows, dtype=np.float64) + 0.5 - height / 2) / f
    return fwd[None, :] + u[:, None] * x[None, :] + v[:, None] * y[None, :]


def pixel_to_plane(row: float, col: float, z: float, height: int, width: int) -> np.ndarray:
    """The point (x, y) where pixel (row, col)'s ray meets the horizontal plane at height z."""
    d = pixel_rays(np.array([row]), np.array([col]), height, width)[0]
    t = (z - CAMERA_POS[2]) / d[2]
    return (CAMERA_POS + t * d)[:2]


def pixel_height_above(row: float, col: float, xy: np.ndarray, height: int, width: int) -> float:
    """The height z of the point of pixel (row, col)'s ray closest to the vertical line through xy."""
    d = pixel_rays(np.array([row]), np.array([col]), height, width)[0]
    dh = d[:2]
    t = float((np.asarray(xy, dtype=np.float64) - CAMERA_POS[:2]) @ dh / (dh @ dh))
    return float(CAMERA_POS[2] + t * d[2])


def project(point: np.ndarray, height: int, width: int) -> tuple[float, float]:
    """(row, col) of a world point (the inverse of the two functions above)."""
    x, y, fwd = _camera_axes()
    rel = np.asarray(point, dtype=np.float64) - CAMERA_POS
    depth = rel @ fwd
    f = (height / 2) / np.tan(np.deg2rad(CAMERA_FOVY) / 2)
    return float(height / 2 - f * (rel @ y) / depth - 0.5), float(width / 2 + f * (rel @ x) / depth - 0.5)


# ----- colour classes ----------------------------------------------------------------------------
def quantise(frames: np.ndarray) -> np.ndarray:
    """uint8 (..., 3) RGB -> flat index into the LEVELS**3 colour table."""
    q = (np.asarray(frames, dtype=np.uint8) >> 3).astype(np.int32)
    return (q[..., 0] * LEVELS + q[..., 1]) * LEVELS + q[..., 2]


def table_from_counts(counts: np.ndarray, min_share: float = 0.6, min_count: float = 2.0) -> np.ndarray:
    """(LEVELS**3, C) pixel counts -> uint8 (LEVELS**3,) class per colour, "other" where unsure.

    Counts are spread over the 3x3x3 neighbouring colours first, so colours a little off the rendered
    ones (compression, a dream's drift) still get the class of their neighbours."""
    c = counts.reshape(LEVELS, LEVELS, LEVELS, -1).astype(np.float64)
    for axis in range(3):
        c = c + np.roll(c, 1, axis) * _edge(axis, 1) + np.roll(c, -1, axis) * _edge(axis, -1)
    smooth = c.reshape(LEVELS**3, -1)
    total = smooth.sum(1)
    best = smooth.argmax(1)
    share = smooth[np.arange(len(best)), best] / np.maximum(total, 1e-9)
    keep = (share >= min_share) & (smooth[np.arange(len(best)), best] >= min_count)
    return np.where(keep, best, 0).astype(np.uint8)


def _edge(axis: int, shift: int) -> np.ndarray:
    """A mask that stops np.roll from wrapping colours around the cube's faces."""
    m = np.ones((LEVELS, 1, 1, 1)) if axis == 0 else np.ones((1, LEVELS, 1, 1)) if axis == 1 else np.ones((1, 1, LEVELS, 1))
    idx = [slice(None)] * 4
    idx[axis] = 0 if shift == 1 else LEVELS - 1
    m[tuple(idx)] = 0
    return m


@dataclass
class ColourTables:
    """One colour table per look (environment), and each look's mean frame colour to recognise it."""

    names: list[str]
    tables: np.ndarray  # uint8 (E, LEVELS**3)
    signatures: np.ndarray  # float (E, 3): mean RGB of that environment's frames

    def pick(self, frames: np.ndarray) -> int:
        """The environment whose mean colour is nearest to these frames'."""
        mean = np.asarray(frames, dtype=np.float64).reshape(-1, 3).mean(0)
        return int(np.argmin(np.linalg.norm(self.signatures - mean, axis=1)))

    def save(self, path: str | Path = COLOUR_TABLE_PATH) -> None:
        np.savez_compressed(path, names=np.array(self.names), tables=self.tables, signatures=self.signatures)

    @classmethod
    def load(cls, path: str | Path = COLOUR_TABLE_PATH) -> ColourTables:
        with np.load(path) as f:
            return cls([str(n) for n in f["names"]], f["tables"], f["signatures"])


_TABLES: ColourTables | None = None


def colour_tables() -> ColourTables:
    global _TABLES
    if _TABLES is None:
        _TABLES = ColourTables.load()
    return _TABLES


def classify(frames: np.ndarray, tables: ColourTables | None = None) -> tuple[np.ndarray, str]:
    """uint8 (T, H, W, 3) -> (uint8 (T, H, W) class ids (CLASSES), the environment recognised from frame 0)."""
    tables = colour_tables() if tables is None else tables
    e = tables.pick(frames[0])
    return tables.tables[e][quantise(frames)], tables.names[e]


# ----- blobs -------------------------------------------------------------------------------------
@dataclass
class Blob:
    row: float
    col: float
    area: int  # pixels kept
    bottom: float = 0.0  # row of the blob's lower edge (its lowest pixel's bottom)


def find_blob(mask: np.ndarray, radius: float, min_area: int) -> Blob | None:
    """The densest cluster of a boolean (H, W) mask: the centre of the (2r+1)-pixel square window holding
    the most mask pixels, refined to the mean of the pixels within `radius` of it. Scattered pixels of the
    same colour elsewhere (a shadow, a dark table) barely move it. None when fewer than `min_area` pixels
    fall in that window."""
    h, w = mask.shape
    r = max(1, int(round(radius)))
    integral = np.zeros((h + 1, w + 1), dtype=np.int64)
    integral[1:, 1:] = mask.astype(np.int64).cumsum(0).cumsum(1)
    rows, cols = np.arange(h), np.arange(w)
    r0, r1 = np.clip(rows - r, 0, h), np.clip(rows + r + 1, 0, h)
    c0, c1 = np.clip(cols - r, 0, w), np.clip(cols + r + 1, 0, w)
    window = (integral[r1][:, c1] - integral[r0][:, c1] - integral[r1][:, c0] + integral[r0][:, c0])
    if window.max() < min_area:
        return None
    pr, pc = np.unravel_index(int(np.argmax(window)), window.shape)
    ys, xs = np.nonzero(mask)
    near = (ys - pr) ** 2 + (xs - pc) ** 2 <= radius**2
    if near.sum() < min_area:
        return None
    return Blob(float(ys[near].mean()), float(xs[near].mean()), int(near.sum()), float(ys[near].max()) + 0.5)


def workspace_mask(height: int, width: int, z: float = 0.02) -> np.ndarray:
    """Pixels whose ray meets the plane z within |x| <= TABLE_X_LIMIT (leaves out the distractors)."""
    rows, cols = np.mgrid[0:height, 0:width]
    d = pixel_rays(rows.ravel(), cols.ravel(), height, width)
    t = (z - CAMERA_POS[2]) / d[:, 2]
    x = CAMERA_POS[0] + t * d[:, 0]
    return (np.abs(x) <= TABLE_X_LIMIT).reshape(height, width)


def fit_colour_tables(samples: dict[str, list[tuple[np.ndarray, np.ndarray]]]) -> ColourTables:
    """{environment: [(rgb uint8 (H, W, 3), class ids (H, W))]} -> per-environment colour tables."""
    names, tables, signatures = [], [], []
    for name, pairs in samples.items():
        counts = np.zeros((LEVELS**3, len(CLASSES)), dtype=np.int64)
        for rgb, labels in pairs:
            np.add.at(counts, (quantise(rgb).ravel(), labels.ravel().astype(np.int64)), 1)
        names.append(name)
        tables.append(table_from_counts(counts))
        signatures.append(np.mean([rgb.reshape(-1, 3).mean(0) for rgb, _ in pairs], axis=0))
    return ColourTables(names, np.stack(tables), np.stack(signatures))
