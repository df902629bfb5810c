"""Boosters' trees as flat numpy arrays: XGBoost's predictions for a few rows without its
per-tree cost, bit for bit.

For a handful of rows, XGBoost's CPU predictor spends ~0.5 us a tree laying the tree out
for a block of rows before walking it: ~0.45 ms for one row of the ~900 depth-4 trees of a
served bundle's five boosters. `Forest` walks every tree of several boosters at once, one
level per numpy step (~50 us for that row); past `FOREST_ROWS` rows XGBoost is faster.

The numbers are XGBoost's own: a node sends a value left when `value < split` (float32), a
missing value (NaN) to its default child; a booster's output is its base margin plus its
trees' leaves added one tree after the other in float32, in tree order, which is how
XGBoost's CPU predictor sums them (checked on the versions of
`clv.model.xgboost_private.VERIFIED`); the base margin is XGBoost's own answer for the booster
with every leaf set to 0. A forest is only built from gbtree boosters with one output and
numerical splits, whose requested output is the margin or equals it (the identity objectives
of `IDENTITY_OBJECTIVES`), and only after it predicted probe rows (values at, just below and
just above every split, missing ones) exactly as XGBoost does; else `build` says why not and
the caller predicts through XGBoost.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypedDict

import numpy as np
import xgboost as xgb

FOREST_ROWS = 16
"""Up to this many rows a `Forest` predicts; beyond, XGBoost's own predictor is faster (on the
serving benchmark's bundle, 920 depth-4 trees: 0.41 against 0.58 ms at 16 rows, 0.88 against
0.67 ms at 32)."""
IDENTITY_OBJECTIVES = frozenset({"reg:squarederror", "reg:quantileerror", "reg:absoluteerror"})
"""Objectives whose prediction is the margin itself."""
PROBE_ROWS = 256


class Unsupported(Exception):
    """The boosters cannot be predicted by a `Forest` (the message says why)."""


class _TreeJson(TypedDict, total=False):
    """A tree of XGBoost's JSON model (the fields read or written here)."""

    base_weights: list[float]
    default_left: list[int]
    id: int
    left_children: list[int]
    loss_changes: list[float]
    parents: list[int]
    right_children: list[int]
    split_conditions: list[float]
    split_indices: list[int]
    split_type: list[int]
    sum_hessian: list[float]
    tree_param: dict[str, str]


class _TreesJson(TypedDict, total=False):
    trees: list[_TreeJson]
    tree_info: list[int]
    iteration_indptr: list[int]
    gbtree_model_param: dict[str, str]


class _BoosterJson(TypedDict, total=False):
    name: str
    model: _TreesJson


class _LearnerJson(TypedDict, total=False):
    gradient_booster: _BoosterJson
    learner_model_param: dict[str, str]
    objective: dict[str, object]


class _ModelJson(TypedDict, total=False):
    learner: _LearnerJson


@dataclass(frozen=True)
class _Tree:
    """One tree in breadth-first order, a node's children side by side."""

    feature: np.ndarray
    split: np.ndarray
    """float32; NaN at a leaf."""
    default_left: np.ndarray
    left: np.ndarray
    """The left child's index (the right one is next); a leaf's own index."""
    leaf: np.ndarray
    """float32; 0 at a split."""
    depth: int


@dataclass(frozen=True)
class Forest:
    """The trees of several boosters, one row of arrays per node (every booster's base margin a
    one-leaf tree in front of its trees), and the tree range of each booster."""

    n_features: int
    depth: int
    column: np.ndarray
    """Per node, the column of `[x with NaN as +inf, x with NaN as -inf]` it compares: a
    missing value then goes to the default child (left: -inf < split) by the comparison alone."""
    split: np.ndarray
    """Per node, the float32 split (NaN at a leaf: the comparison never sends it on)."""
    left: np.ndarray
    leaf: np.ndarray
    roots: np.ndarray
    """Every tree's root, then a last tree: one leaf of -0.0 (x + -0.0 is x, exactly)."""
    terms: np.ndarray
    """Per booster, the positions in `roots` of its base margin and trees in order, padded
    with the last tree's: one float32 sum per row of it adds each booster's terms."""

    @classmethod
    def build(cls, boosters: Sequence[tuple[xgb.Booster, bool]]) -> Forest:
        """A forest for (booster, margin) pairs, checked against XGBoost on probe rows; raises
        `Unsupported` when one of them is not a booster it can predict exactly."""
        trees: list[_Tree] = []
        segments: list[tuple[int, int]] = []
        n_features: int | None = None
        for booster, margin in boosters:
            model: _ModelJson = json.loads(bytes(booster.save_raw("json")))
            width = _check(model, margin=margin)
            if n_features is not None and width != n_features:
                raise Unsupported(f"boosters of {n_features} and {width} features")
            n_features = width
            start = len(trees)
            trees.append(_base_tree(_base_margin(model, width)))
            trees.extend(_tree(t) for t in model["learner"]["gradient_booster"]["model"]["trees"])
            segments.append((start, len(trees)))
        if n_features is None:
            raise Unsupported("no boosters")
        forest = cls._of(trees, segments, n_features)
        forest._verify(boosters)
        return forest

    @classmethod
    def _of(cls, trees: list[_Tree], segments: list[tuple[int, int]], n_features: int) -> Forest:
        trees = [*trees, _base_tree(-0.0)]
        offsets = np.cumsum([0] + [len(t.leaf) for t in trees])
        feature = np.concatenate([t.feature for t in trees])
        default_left = np.concatenate([t.default_left for t in trees])
        left = np.concatenate([t.left + o for t, o in zip(trees, offsets, strict=False)])
        arrays = {
            "column": feature + n_features * default_left,
            "split": np.concatenate([t.split for t in trees]),
            "left": left,
            "leaf": np.concatenate([t.leaf for t in trees]),
            "roots": np.asarray(offsets[:-1], dtype=np.intp),
            "terms": np.full(
                (len(segments), max(stop - start for start, stop in segments)),
                len(trees) - 1,
                dtype=np.intp,
            ),
        }
        for row, (start, stop) in enumerate(segments):
            arrays["terms"][row, : stop - start] = np.arange(start, stop)
        for array in arrays.values():
            array.flags.writeable = False
        return cls(n_features=n_features, depth=max(t.depth for t in trees), **arrays)

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        """Each booster's output (float64, as XGBoost's float32) for the rows of a float32
        matrix of `n_features` columns."""
        n, m = x.shape
        both = np.empty((n, 2 * m), dtype=np.float32)
        np.fmin(x, np.inf, out=both[:, :m])  # NaN -> +inf (fmin ignores a NaN), else x
        np.fmax(x, -np.inf, out=both[:, m:])  # NaN -> -inf
        left, column, split = self.left, self.column, self.split
        node = self.roots
        if n == 1:
            values = both[0]
            for _ in range(self.depth):
                node = left[node] + (values[column[node]] >= split[node])
        else:
            values = both.ravel()
            rows = (np.arange(n, dtype=np.intp) * (2 * m))[:, None]
            for _ in range(self.depth):
                node = left[node] + (values[rows + column[node]] >= split[node])
        leaves = self.leaf[node]
        # one float32 addition per tree, in tree order, from the base margin: XGBoost's sum
        sums = np.add.accumulate(leaves[..., self.terms], axis=-1)[..., -1]
        return list(np.ascontiguousarray(sums.reshape(n, -1).T, dtype=np.float64))

    def _verify(self, boosters: Sequence[tuple[xgb.Booster, bool]]) -> None:
        """Raise `Unsupported` unless the forest predicts the probe rows as XGBoost does."""
        probe = self._probe_rows()
        got = self(probe)
        got_one = self(probe[:1])
        for (booster, margin), ours, first in zip(boosters, got, got_one, strict=True):
            kind = "margin" if margin else "value"
            theirs = np.asarray(booster.inplace_predict(probe, predict_type=kind), np.float64)
            if not (np.array_equal(ours, theirs) and np.array_equal(first, theirs[:1])):
                raise Unsupported("the forest's predictions differ from XGBoost's on probe rows")

    def _probe_rows(self) -> np.ndarray:
        """Rows whose values sit at, just below or just above the splits of their column, or
        are missing (seeded)."""
        rng = np.random.default_rng(0)
        internal = ~np.isnan(self.split)
        feature = self.column[internal] % self.n_features
        splits = self.split[internal]
        x = np.full((PROBE_ROWS, self.n_features), np.nan, dtype=np.float32)
        for j in range(self.n_features):
            at = splits[feature == j]
            if at.size == 0:
                continue
            values = np.concatenate(
                [at, np.nextafter(at, np.float32(-np.inf)), np.nextafter(at, np.float32(np.inf))]
            )
            x[:, j] = rng.choice(values, PROBE_ROWS)
        x[rng.random(x.shape) < 0.2] = np.nan
        return x


def _check(model: _ModelJson, *, margin: bool) -> int:
    """The booster's feature count, or `Unsupported` when a forest cannot predict it."""
    learner = model["learner"]
    booster = learner["gradient_booster"]
    if booster.get("name") != "gbtree":
        raise Unsupported(f"booster {booster.get('name')!r} (only gbtree)")
    param = learner["learner_model_param"]
    if int(param.get("num_target", 1)) != 1 or int(param.get("num_class", 0)) > 1:
        raise Unsupported("more than one output")
    objective = str(learner["objective"]["name"])
    if not margin and objective not in IDENTITY_OBJECTIVES:
        raise Unsupported(f"the prediction of {objective} is not its margin")
    trees = booster["model"]["trees"]
    if not trees:
        raise Unsupported("a booster without trees")
    if any(int(i) != 0 for i in booster["model"].get("tree_info", [])):
        raise Unsupported("trees of several output groups")
    for tree in trees:
        if int(tree["tree_param"].get("size_leaf_vector", 1)) > 1:
            raise Unsupported("vector leaves")
        if any(int(s) != 0 for s in tree.get("split_type", [])):
            raise Unsupported("categorical splits")
    return int(param["num_feature"])


def _tree(tree: _TreeJson) -> _Tree:
    """A tree of XGBoost's JSON model in breadth-first order, a node's children side by side
    (a leaf holds its value in `split_conditions`)."""
    lefts, rights = tree["left_children"], tree["right_children"]
    order, depth, level = [0], 0, [0]
    while True:
        following = [int(c) for n in level if lefts[n] != -1 for c in (lefts[n], rights[n])]
        if not following:
            break
        order += following
        level = following
        depth += 1
    nodes = np.asarray(order, dtype=np.intp)
    position = np.empty(len(lefts), dtype=np.intp)
    position[nodes] = np.arange(nodes.size)
    left = np.asarray(lefts, dtype=np.intp)[nodes]
    is_leaf = left == -1
    conditions = np.asarray(tree["split_conditions"], dtype=np.float64)[nodes]
    values = conditions.astype(np.float32)  # written as the shortest text that reads back as it
    if not np.isfinite(values).all():
        raise Unsupported("a non-finite split or leaf value")
    return _Tree(
        feature=np.where(is_leaf, 0, np.asarray(tree["split_indices"], dtype=np.intp)[nodes]),
        split=np.where(is_leaf, np.float32(np.nan), values),
        default_left=np.asarray(tree["default_left"], dtype=bool)[nodes] & ~is_leaf,
        left=np.where(is_leaf, np.arange(nodes.size), position[np.maximum(left, 0)]),
        leaf=np.where(is_leaf, values, np.float32(0.0)),
        depth=depth,
    )


def _base_tree(margin: float) -> _Tree:
    """A one-leaf tree holding a booster's base margin (the first term of its sum)."""
    return _Tree(
        feature=np.zeros(1, dtype=np.intp),
        split=np.full(1, np.nan, dtype=np.float32),
        default_left=np.zeros(1, dtype=bool),
        left=np.zeros(1, dtype=np.intp),
        leaf=np.full(1, margin, dtype=np.float32),
        depth=0,
    )


def _base_margin(model: _ModelJson, n_features: int) -> float:
    """The booster's base margin as XGBoost adds it: its margin for the same learner with one
    tree, a single leaf of 0 (base + 0 is the base, exactly)."""
    learner = _LearnerJson(**model["learner"])  # shallow copies down to the trees
    booster = _BoosterJson(**learner["gradient_booster"])
    trees = _TreesJson(**booster["model"])
    first = trees["trees"][0]
    leaf: _TreeJson = {
        **first,
        "base_weights": [0.0],
        "default_left": [0],
        "id": 0,
        "left_children": [-1],
        "loss_changes": [0.0],
        "parents": [2147483647],
        "right_children": [-1],
        "split_conditions": [0.0],
        "split_indices": [0],
        "split_type": [0],
        "sum_hessian": [0.0],
        "tree_param": {**first["tree_param"], "num_nodes": "1", "num_deleted": "0"},
    }
    trees.update(
        {
            "trees": [leaf],
            "tree_info": [0],
            "iteration_indptr": [0, 1],
            "gbtree_model_param": {"num_parallel_tree": "1", "num_trees": "1"},
        }
    )
    booster["model"] = trees
    learner["gradient_booster"] = booster
    one = xgb.Booster()
    one.load_model(bytearray(json.dumps({**model, "learner": learner}).encode()))
    one.set_param({"nthread": 1})
    row = np.full((1, n_features), np.nan, dtype=np.float32)
    return float(np.float32(one.inplace_predict(row, predict_type="margin")[0]))
