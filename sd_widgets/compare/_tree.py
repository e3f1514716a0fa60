"""The comparison as a tree, serialised once: the columnar payload, and the same nested.

:func:`serialise` turns a comparison's rows, grouped by :meth:`Comparison.module_children`, into
ONE compact, columnar JSON object: the module tree flattened in pre-order, one entry per module
node or tensor row, each column a list indexed by entry. A subtree is the contiguous range
``[i + 1, end[i])``, so the widget's front end can collapse, filter, range-select and virtualise
a 30,000-key tree with plain array scans. The root module is not an entry; its counts are
``payload["counts"]``. The tensor columns are the row fields of
:data:`sd_widgets.compare._compare.ROW_FIELDS`, in its order. The Explorer's tree payload
(:func:`sd_widgets.widget._tree_payload.payload_from_comparison`) is this object, and
:meth:`Comparison.tree` is :func:`nested` of it: there is no second serialiser.

Columns (``payload["columns"]``), ``None`` where a column does not apply to an entry:

==============  ================================================================
``t``           0 = module node, 1 = tensor row
``depth``       0 for children of the root
``end``         index one past the entry's subtree (``i + 1`` for a tensor)
``parent``      index of the parent module entry, -1 for children of the root
``name``        last path segment shown in the tree
``path``        module path (modules) or row key (tensors: the model key when the
                model has it, else the checkpoint key)
``module_type`` class name of the module, or None
``counts``      modules: one count per status of ``payload["statuses"]`` (subtree)
``sides``       tensors: 1 checkpoint only, 2 model only, 3 both;
                modules: 1/2/3 from the counts (which columns have keys under it)
``status``      tensors: index into ``payload["statuses"]``
``kind``        tensors: "param", "buffer" or None (checkpoint-only)
``ckpt_key``    tensors: checkpoint key when it differs from ``path`` (a rename), else None
``model_key``   tensors: model key when it differs from ``path``, else None
``ckpt_shape``  / ``model_shape``: lists of ints, None when that side is absent
``ckpt_dtype``  / ``model_dtype``: index into ``payload["dtypes"]``, None when absent
``nbytes``      tensors: bytes (checkpoint side, else model side); modules: subtree sum
``numel``       tensors: elements (checkpoint side, else model side); modules: subtree sum
``loadable``    tensors: 1 when selectable as is (match, dtype mismatch), else 0
``adaptable``   tensors: 1 for a shape mismatch the "overlap" adapter can load, else 0
``reason``      tensors: why the row cannot be loaded as is (hover text), or None
``tied``        tensors: other keys sharing the storage, or None
``tied_to``     tensors: for a model key absent from the checkpoint, the key whose Parameter it
                is (it changes when that key loads), else None
==============  ================================================================

Strings from checkpoints and models go into the payload unchanged; the front end inserts them
with ``textContent`` only. The payload is read-only: equal ``counts`` and shapes are one list
object (a Mixture of Experts has a few distinct ones among 460,000 entries, and every list is
an object the cyclic garbage collector walks on each pass).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from itertools import accumulate, chain, compress, repeat
from operator import add, attrgetter, or_, sub
from typing import Any

from ..checkpoint._core import tied_preview
from ..statuses import STATUS_INFO, STATUSES, legend
from ..units import numel as _numel
from ._compare import row_fields

PAYLOAD_VERSION = 1

_LEGEND = {item["status"]: item for item in legend()}
#: the row fields a tensor entry carries (from the one table, :data:`compare.ROW_FIELDS`, in its
#: order); its key is the entry's ``path``, its module the enclosing module entry
_ROW_COLUMNS = row_fields(without=("key", "module", "model_on_meta", "config_mismatch"))
_AFTER_NBYTES = _ROW_COLUMNS.index("nbytes") + 1
#: the payload's columns: the tree's own, then the row fields (``numel`` next to ``nbytes``)
COLUMNS = (
    *("t", "depth", "end", "parent", "name", "path", "module_type", "counts", "sides"),
    *_ROW_COLUMNS[:_AFTER_NBYTES],
    "numel",
    *_ROW_COLUMNS[_AFTER_NBYTES:],
)
_CKPT_SIDE = frozenset(s for s, i in STATUS_INFO.items() if i.on_checkpoint_side)
_MODEL_SIDE = frozenset(s for s, i in STATUS_INFO.items() if i.on_model_side)


def _preorder(
    children: Mapping[str, Sequence[Any]],
) -> tuple[list[Any], list[int], list[int], list[int], list[int]]:
    """The entries in pre-order (module paths and rows); per entry its parent, depth, end.

    Also the positions of the module entries, in order. ``end`` is the index one past the
    entry's subtree (``i + 1`` for a row). Iterative, so a key thousands of levels deep needs
    no deep Python stack; the loop does the least per entry (three appends), a module's end is
    written when its children are done.
    """
    items: list[Any] = []
    parents: list[int] = []
    depths: list[int] = []
    module_at: list[int] = []
    closed: list[int] = []  # modules in the order their subtrees end, and where they end
    closed_end: list[int] = []
    add_item, add_parent, add_depth = items.append, parents.append, depths.append
    stack: list[tuple[Iterator[Any], int, int]] = []
    push, pop = stack.append, stack.pop
    it, parent, depth = iter(children[""]), -1, 0
    while True:
        for item in it:
            add_item(item)
            add_parent(parent)
            add_depth(depth)
            if type(item) is str:  # a module: its children next
                push((it, parent, depth))
                parent = len(items) - 1
                module_at.append(parent)
                it, depth = iter(children[item]), depth + 1
                break
        else:  # `it` is done: the module `parent` ends here
            if not stack:
                break
            closed.append(parent)
            closed_end.append(len(items))
            it, parent, depth = pop()
    ends = list(range(1, len(items) + 1))
    _consume(map(ends.__setitem__, closed, closed_end))
    return items, parents, depths, ends, module_at


def _consume(values: Iterable[Any]) -> None:
    """Run an iterator of side effects (``map`` of a ``__setitem__``) to its end, in C."""
    deque(values, maxlen=0)


def serialise(
    children: Mapping[str, Sequence[Any]],
    module_types: Mapping[str, str],
    *,
    source: str = "",
    model: str = "",
) -> dict:
    """The one serialiser: module path → children (module paths, rows) → the payload.

    ``children`` is :meth:`Comparison.module_children`: ``children[""]`` holds the root's
    children; a row is a :class:`~sd_widgets.compare._compare.Row`. One pre-order walk gives
    the entries; every column is then built whole: a row field is read once per row and
    written to the rows' entries by position (C-level ``map`` of ``__setitem__``), and a
    module's ``counts``, ``nbytes`` and ``numel`` are differences of running sums, since its
    subtree is the contiguous range ``[i + 1, end[i])``. No Python work per entry and column
    (a 100,000-key tree has about 450,000 entries and 25 columns).
    """
    statuses = list(STATUSES)
    status_index = {s: i for i, s in enumerate(statuses)}
    items, parents, depths, ends, module_at = _preorder(children)
    n = len(items)
    is_row = [1] * n  # the ``t`` column
    _consume(map(is_row.__setitem__, module_at, repeat(0)))
    row_at = list(compress(range(n), is_row))
    rows = list(map(items.__getitem__, row_at))
    modules = list(map(items.__getitem__, module_at))
    n_modules = len(modules)

    def spread(at: list[int], values: Iterable[Any], col: list[Any] | None = None) -> list[Any]:
        """Values for the entries at positions ``at``; every other entry None (or ``col``'s)."""
        col = [None] * n if col is None else col
        _consume(map(col.__setitem__, at, values))
        return col

    def on_rows(values: Iterable[Any]) -> list[Any]:
        """One value per row → one per entry (None for the modules)."""
        return spread(row_at, values)

    def on_both(module_values: Iterable[Any], row_values: Iterable[Any]) -> list[Any]:
        """One value per module and one per row → one per entry."""
        return spread(row_at, row_values, spread(module_at, module_values))

    def field(name: str) -> list[Any]:
        return list(map(attrgetter(name), rows))

    def as_lists(values: Sequence[tuple[int, ...] | None]) -> list[list[int] | None]:
        """Each tuple as a list, equal tuples as ONE list object (None stays None).

        A tree holds few distinct shapes and per-status counts (every expert of a Mixture of
        Experts has the same), so the payload holds a few lists instead of one per entry:
        hundreds of thousands fewer objects for the cyclic garbage collector to walk on each
        of its passes. The payload is read-only; its JSON is the same.
        """
        one: dict[Any, Any] = {t: list(t) for t in set(values) if t is not None}
        one[None] = None
        return list(map(one.__getitem__, values))

    keys, ckpt_keys, model_keys = field("key"), field("ckpt_key"), field("model_key")
    ckpt_shapes, model_shapes = field("ckpt_shape"), field("model_shape")
    ckpt_dtypes, model_dtypes = field("ckpt_dtype"), field("model_dtype")
    status = list(map(status_index.get, field("status")))
    if None in status:
        r = rows[status.index(None)]
        raise ValueError(
            f"row {r.key!r} has unknown status {r.status!r}; expected one of {statuses}"
        )
    # dtype names in order of first appearance (checkpoint side first), as indices
    both = chain.from_iterable(zip(ckpt_dtypes, model_dtypes, strict=True))
    dtypes = [d for d in dict.fromkeys(both) if d is not None]
    dtype_index = {d: i for i, d in enumerate(dtypes)}
    row_nbytes = [int(b or 0) for b in field("nbytes")]
    # elements of the checkpoint side, else the model side (few distinct shapes: one product each)
    numel_shapes = [m if c is None else c for c, m in zip(ckpt_shapes, model_shapes, strict=True)]
    numel_of = {s: 0 if s is None else _numel(s) for s in set(numel_shapes)}
    row_numel = list(map(numel_of.__getitem__, numel_shapes))
    row_sides = [
        (0 if c is None else 1) | (0 if m is None else 2)
        for c, m in zip(ckpt_keys, model_keys, strict=True)
    ]
    # a module's subtree is [i + 1, end): its rows are those numbered (before i, before end],
    # so its totals are differences of running sums over the rows
    rows_before = [0, *accumulate(is_row)]
    first_row = list(map(rows_before.__getitem__, module_at))  # no row at the module itself
    past_row = list(map(rows_before.__getitem__, map(ends.__getitem__, module_at)))

    def subtree_sums(per_row: Iterable[int]) -> list[int]:
        run = [0, *accumulate(per_row)]
        return list(map(sub, map(run.__getitem__, past_row), map(run.__getitem__, first_row)))

    present = set(status)
    per_status = [
        subtree_sums(map(j.__eq__, status)) if j in present else [0] * n_modules
        for j in range(len(statuses))
    ]

    def side_flag(flag: int, side: frozenset[str]) -> list[int]:
        """Per module: ``flag`` when a row under it has a status of ``side``, else 0."""
        total = [0] * n_modules
        for j, s in enumerate(statuses):
            if s in side and j in present:
                total = list(map(add, total, per_status[j]))
        return [flag if c else 0 for c in total]

    module_sides = list(map(or_, side_flag(1, _CKPT_SIDE), side_flag(2, _MODEL_SIDE)))
    paths = on_both(modules, keys)
    cols: dict[str, list[Any]] = {
        "t": is_row,
        "depth": depths,
        "end": ends,
        "parent": parents,
        "name": [p.rpartition(".")[2] for p in paths],
        "path": paths,
        "module_type": spread(module_at, map(module_types.get, modules)),
        "counts": spread(module_at, as_lists(list(zip(*per_status, strict=True)))),
        "sides": on_both(module_sides, row_sides),
        "status": on_rows(status),
        "kind": on_rows(field("kind")),
        "ckpt_key": on_rows([None if c == k else c for c, k in zip(ckpt_keys, keys, strict=True)]),
        "model_key": on_rows(
            [None if m == k else m for m, k in zip(model_keys, keys, strict=True)]
        ),
        "ckpt_shape": on_rows(as_lists(ckpt_shapes)),
        "model_shape": on_rows(as_lists(model_shapes)),
        "ckpt_dtype": on_rows(map(dtype_index.get, ckpt_dtypes)),
        "model_dtype": on_rows(map(dtype_index.get, model_dtypes)),
        "nbytes": on_both(subtree_sums(row_nbytes), row_nbytes),
        "numel": on_both(subtree_sums(row_numel), row_numel),
        "loadable": on_rows([1 if r.loadable else 0 for r in rows]),
        "adaptable": on_rows([1 if r.adaptable else 0 for r in rows]),
        "reason": on_rows([r.reason or None for r in rows]),
        "tied": on_rows([tied_preview(t) if t else None for t in field("tied")]),
        "tied_to": on_rows([t or None for t in field("tied_to")]),
    }
    root_counts = list(map(status.count, range(len(statuses))))
    return {
        "version": PAYLOAD_VERSION,
        "statuses": statuses,
        "legend": [_LEGEND[s] for s in statuses if s in _LEGEND],
        "dtypes": dtypes,
        "counts": root_counts,
        "n_keys": len(rows),
        "n_entries": n,
        "source": source,
        "model": model,
        # one sentence about every problem at once (a config size ratio), or ""
        "diagnosis": "",
        "columns": {c: cols[c] for c in COLUMNS},
    }


def nested(
    payload: Mapping[str, Any],
    *,
    leaf: Callable[[str], dict[str, Any]],
    module_type: str | None = None,
) -> dict[str, Any]:
    """The payload as nested module nodes: what :meth:`Comparison.tree` returns.

    Module node: ``{"type": "module", "name", "path", "module_type", "counts": {status: n}
    (non-zero, whole subtree), "children": [...]}``; the root has ``path`` and ``name`` ""
    and ``module_type`` given here (the model's class). Each tensor entry becomes
    ``leaf(key)`` (the comparison gives its row's JSON). One pass over the entries, no
    recursion: a key thousands of levels deep nests without a deep Python stack.
    """
    statuses = payload["statuses"]

    def counts(values: Sequence[int]) -> dict[str, int]:
        return {s: n for s, n in zip(statuses, values, strict=True) if n}

    root: dict[str, Any] = {
        "type": "module",
        "name": "",
        "path": "",
        "module_type": module_type,
        "counts": counts(payload["counts"]),
        "children": [],
    }
    cols = payload["columns"]
    modules: dict[int, dict[str, Any]] = {}
    for i, (t, path, parent) in enumerate(
        zip(cols["t"], cols["path"], cols["parent"], strict=True)
    ):
        siblings = (modules[parent] if parent >= 0 else root)["children"]
        if t == 1:
            siblings.append(leaf(path))
            continue
        node = modules[i] = {
            "type": "module",
            "name": cols["name"][i],
            "path": path,
            "module_type": cols["module_type"][i],
            "counts": counts(cols["counts"][i]),
            "children": [],
        }
        siblings.append(node)
    return root
