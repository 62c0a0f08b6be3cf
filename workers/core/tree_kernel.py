"""All trees of a HistGradientBoosting model in one compiled call per batch.

scikit-learn's predictor is called once per tree: ~2.5 µs of call overhead each (buffer
checks of six arrays, an OpenMP region), ~0.5 ms per batch for the reference model's 120
trees whatever the batch size, which is most of a small batch's cost. This kernel walks
every tree for every row in one call (numba, without the GIL), with the predictor's own
rules: NaN and negative categories go the missing side, a category in the node's bitset
goes left, another known one right, an unknown one the missing side; numeric values at or
below the threshold go left. Values are added per row in tree order into the same
(Fortran-ordered) array as the predictor's caller, so the sums have the same bits
(lean_hgb checks the sums and the probabilities at load).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from workers.core.jit import compiled


def _walk_all_trees(x: np.ndarray, nodes: np.ndarray, roots: np.ndarray, columns: np.ndarray,
                    left_bitsets: np.ndarray, known_bitsets: np.ndarray, f_idx_map: np.ndarray,
                    raw: np.ndarray) -> None:
    n = x.shape[0]
    values = np.empty(n)
    for t in range(roots.shape[0]):  # tree by tree: its nodes stay in cache across the rows
        root = roots[t]
        for i in range(n):
            index = root
            node = nodes[index]
            while not node.is_leaf:
                v = x[i, node.feature_idx]
                if np.isnan(v):
                    go_left = node.missing_go_to_left != 0
                elif node.is_categorical:
                    if v < 0:
                        go_left = node.missing_go_to_left != 0
                    else:
                        # the predictor casts to an 8-bit bin; the encoder gives codes 0-254 or NaN
                        c = np.int64(v) & 255
                        if (left_bitsets[node.bitset_idx, c >> 5] >> (c & 31)) & 1:
                            go_left = True
                        elif (known_bitsets[f_idx_map[node.feature_idx], c >> 5] >> (c & 31)) & 1:
                            go_left = False
                        else:  # unknown category: treated as missing
                            go_left = node.missing_go_to_left != 0
                else:
                    go_left = v <= node.num_threshold
                index = node.left if go_left else node.right  # (indexing with the conditional is 3x slower)
                node = nodes[index]
            values[i] = node.value
        column = columns[t]
        for i in range(n):
            raw[i, column] += values[i]


_compiled: list[Any] = []  # one dispatcher per process: a model switched in by a rollout reuses it


def compile_kernel() -> Any:
    """The jitted kernel (cached on disk where the package directory is writable)."""
    if not _compiled:
        _compiled.append(compiled(_walk_all_trees))
    return _compiled[0]


class Forest:
    """A model's trees as one node array: child and bitset indices offset to their tree's place."""

    def __init__(self, predictors: list[list[Any]], known_bitsets: np.ndarray, f_idx_map: np.ndarray) -> None:
        parts, bitsets, roots, columns = [], [], [], []
        node_offset = bitset_offset = 0
        for iteration in predictors:  # the order _predict_iterations adds the trees in
            for column, tree in enumerate(iteration):
                nodes = tree.nodes.copy()
                nodes["left"] += node_offset
                nodes["right"] += node_offset
                nodes["bitset_idx"] += bitset_offset
                parts.append(nodes)
                bitsets.append(tree.raw_left_cat_bitsets)
                roots.append(node_offset)
                columns.append(column)
                node_offset += len(nodes)
                bitset_offset += len(tree.raw_left_cat_bitsets)
        self.nodes = np.concatenate(parts)
        self.left_bitsets = np.ascontiguousarray(np.concatenate(bitsets))
        self.roots = np.asarray(roots, dtype=np.int64)
        self.columns = np.asarray(columns, dtype=np.int64)
        self.known_bitsets = np.ascontiguousarray(known_bitsets)
        self.f_idx_map = np.ascontiguousarray(f_idx_map)
        self._kernel = compile_kernel()

    def add_to(self, x: np.ndarray, raw: np.ndarray) -> None:
        """``raw[i, k] += tree(x[i])`` for every tree, in order."""
        self._kernel(np.ascontiguousarray(x), self.nodes, self.roots, self.columns, self.left_bitsets,
                     self.known_bitsets, self.f_idx_map, raw)
