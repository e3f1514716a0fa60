"""The comparison as a tree, serialised once: the columnar payload, and the same nested.

:func:`serialise` turns a comparison's rows, grouped by :meth:`Comparison.module_children`, into
ONE compact, columnar JSON object: the module tree flattened in pre-order, one entry per module
node or tensor row, each column a list indexed by entry. A subtree is the contiguous range
``[i + 1, end[i])``, so the widget's front end can collapse, filter, range-select and virtualise
a 30,000-key tree with plain array scans. The root module is not an entry; its counts are
``payload["counts"]``. The tensor columns are the row fields of
:data:`sd_widgets.compare._compare.ROW_FIELDS`, in its order. The Explorer's tree payload
(:func:`sd_widgets.widget._payload.payload_from_comparison`) is this object, and
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
with ``textContent`` only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..checkpoint._core import tied_preview
from ..statuses import STATUS_INFO, STATUSES, legend
from ..units import numel as _numel
from ._compare import row_fields

PAYLOAD_VERSION = 1

_LEGEND = {item["status"]: item for item in legend()}
#: the row fields a tensor entry carries (from the one table, :data:`compare.ROW_FIELDS`, in its
#: order); its key is the entry's ``path``, its module the enclosing module entry
_ROW_COLUMNS = row_fields(without=("key", "module", "model_on_meta"))
_AFTER_NBYTES = _ROW_COLUMNS.index("nbytes") + 1
#: the payload's columns: the tree's own, then the row fields (``numel`` next to ``nbytes``)
COLUMNS = (
    *("t", "depth", "end", "parent", "name", "path", "module_type", "counts", "sides"),
    *_ROW_COLUMNS[:_AFTER_NBYTES],
    "numel",
    *_ROW_COLUMNS[_AFTER_NBYTES:],
)
#: the columns a module entry leaves None (its ``nbytes`` and ``numel`` are subtree sums)
_TENSOR_ONLY = tuple(c for c in _ROW_COLUMNS if c != "nbytes")
_CKPT_SIDE = frozenset(s for s, i in STATUS_INFO.items() if i.on_checkpoint_side)
_MODEL_SIDE = frozenset(s for s, i in STATUS_INFO.items() if i.on_model_side)


def serialise(
    children: Mapping[str, Sequence[Any]],
    module_types: Mapping[str, str],
    *,
    source: str = "",
    model: str = "",
) -> dict:
    """The one serialiser: module path → children (module paths, rows) → the payload.

    ``children`` is :meth:`Comparison.module_children`: ``children[""]`` holds the root's
    children; a row is a :class:`~sd_widgets.compare._compare.Row`. An iterative
    pre-order walk: a module's ``end``, ``counts`` and ``sides`` are filled on exit, and
    ``nbytes``/``numel``/``counts`` are summed into the parent as each entry is finished (one
    pass, not one per module).
    """
    statuses = list(STATUSES)
    status_index = {s: i for i, s in enumerate(statuses)}
    n_status = len(statuses)
    ckpt_side = [j for j, s in enumerate(statuses) if s in _CKPT_SIDE]
    model_side = [j for j, s in enumerate(statuses) if s in _MODEL_SIDE]
    dtypes: list[str] = []
    dtype_index: dict[str, int] = {}

    def dt(name: str | None) -> int | None:
        if name is None:
            return None
        i = dtype_index.get(name)
        if i is None:
            i = dtype_index[name] = len(dtypes)
            dtypes.append(name)
        return i

    cols: dict[str, list] = {c: [] for c in COLUMNS}
    c = cols
    t_, depth_, end_, parent_ = c["t"], c["depth"], c["end"], c["parent"]
    name_, path_, mtype_ = c["name"], c["path"], c["module_type"]
    counts_, sides_, nbytes_, numel_ = c["counts"], c["sides"], c["nbytes"], c["numel"]
    status_, kind_, ckey_, mkey_ = c["status"], c["kind"], c["ckpt_key"], c["model_key"]
    cshape_, mshape_ = c["ckpt_shape"], c["model_shape"]
    cdt_, mdt_ = c["ckpt_dtype"], c["model_dtype"]
    loadable_, adaptable_, reason_ = c["loadable"], c["adaptable"], c["reason"]
    tied_, tied_to_ = c["tied"], c["tied_to"]
    tensor_only = [c[name] for name in _TENSOR_ONLY]
    root_counts = [0] * n_status
    n_keys = 0
    stack: list[tuple[Any, int, int, bool]] = [(ch, 0, -1, False) for ch in reversed(children[""])]
    while stack:
        item, depth, parent, exiting = stack.pop()
        if exiting:
            i = parent  # on exit `parent` carries the module's own index
            end_[i] = len(t_)
            counts = counts_[i]
            sides_[i] = (1 if any(counts[j] for j in ckpt_side) else 0) | (
                2 if any(counts[j] for j in model_side) else 0
            )
            up = parent_[i]
            target = counts_[up] if up >= 0 else root_counts
            for j in range(n_status):
                target[j] += counts[j]
            if up >= 0:
                nbytes_[up] += nbytes_[i]
                numel_[up] += numel_[i]
            continue
        i = len(t_)
        depth_.append(depth)
        end_.append(i + 1)
        parent_.append(parent)
        if isinstance(item, str):  # a module node
            t_.append(0)
            name_.append(item.rpartition(".")[2])
            path_.append(item)
            mtype_.append(module_types.get(item))
            counts_.append([0] * n_status)
            sides_.append(0)
            for col in tensor_only:
                col.append(None)
            nbytes_.append(0)
            numel_.append(0)
            stack.append((item, depth, i, True))
            stack.extend((ch, depth + 1, i, False) for ch in reversed(children[item]))
            continue
        r = item
        n_keys += 1
        key = r.key
        s = status_index.get(r.status)
        if s is None:
            raise ValueError(
                f"row {key!r} has unknown status {r.status!r}; expected one of {statuses}"
            )
        ckpt_key, model_key = r.ckpt_key, r.model_key
        ckpt_shape, model_shape = r.ckpt_shape, r.model_shape
        shape = ckpt_shape if ckpt_shape is not None else model_shape
        numel = _numel(shape) if shape is not None else 0
        nbytes = int(r.nbytes or 0)
        t_.append(1)
        name_.append(key.rpartition(".")[2])
        path_.append(key)
        mtype_.append(None)
        counts_.append(None)
        sides_.append((1 if ckpt_key is not None else 0) | (2 if model_key is not None else 0))
        status_.append(s)
        kind_.append(r.kind)
        ckey_.append(ckpt_key if ckpt_key is not None and ckpt_key != key else None)
        mkey_.append(model_key if model_key is not None and model_key != key else None)
        cshape_.append(list(ckpt_shape) if ckpt_shape is not None else None)
        mshape_.append(list(model_shape) if model_shape is not None else None)
        cdt_.append(dt(r.ckpt_dtype))
        mdt_.append(dt(r.model_dtype))
        nbytes_.append(nbytes)
        numel_.append(numel)
        loadable_.append(1 if r.loadable else 0)
        adaptable_.append(1 if r.adaptable else 0)
        reason_.append(r.reason or None)
        tied_.append(tied_preview(r.tied) or None)
        tied_to_.append(r.tied_to or None)
        if parent >= 0:
            counts_[parent][s] += 1
            nbytes_[parent] += nbytes
            numel_[parent] += numel
        else:
            root_counts[s] += 1
    return {
        "version": PAYLOAD_VERSION,
        "statuses": statuses,
        "legend": [_LEGEND[s] for s in statuses if s in _LEGEND],
        "dtypes": dtypes,
        "counts": root_counts,
        "n_keys": n_keys,
        "n_entries": len(t_),
        "source": source,
        "model": model,
        # one sentence about every problem at once (a config size ratio), or ""
        "diagnosis": "",
        "columns": cols,
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
