"""The tree payload: the comparison as the widget's one tree trait, and the index over it.

:func:`payload_from_comparison` is the comparison as the one serialiser of the tree writes it
(:func:`sd_widgets.compare._tree.serialise`, whose docstring lists the columns;
:meth:`Comparison.tree` is the same payload nested), plus the widget's own ``diagnosis``; the
browser takes the column names from the payload (it keeps no list of its own).
:func:`row_selectable` is THE selectability rule; :class:`TreeIndex` answers "which keys are
under this module" for the selection gestures. Strings from checkpoints and models go into the
payload unchanged; the front end inserts them with ``textContent`` only.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from itertools import compress
from typing import TYPE_CHECKING, Any

from ..compare._tree import COLUMNS as _COLUMNS
from ..compare._tree import serialise
from ..statuses import STATUSES as _STATUSES
from ..statuses import legend

if TYPE_CHECKING:
    from ..compare._compare import Comparison


#: the statuses and how each is shown come from the one vocabulary (:mod:`sd_widgets.statuses`)
STATUSES: tuple[str, ...] = _STATUSES
#: how each status is shown: colour (CSS, Okabe–Ito) AND an icon AND a label
LEGEND: list[dict[str, str]] = legend()
_LEGEND_BY_STATUS = {item["status"]: item for item in LEGEND}


# --------------------------------------------------------------------------------------------
# the tree payload
# --------------------------------------------------------------------------------------------


def row_selectable(row: Any, adapters: Mapping[str, Any] | None = None) -> bool:
    """THE rule: a row can be selected when it loads as is, or is adaptable and has an adapter.

    Asked of a :class:`~sd_widgets.compare._compare.Row`. Decided here only: the widget asks it of the rows (:func:`selectable_keys`), and the
    browser reads the outcome (the payload's ``loadable`` and the validated ``adapters``).
    """
    return bool(row.loadable or (row.adaptable and adapters is not None and row.key in adapters))


def selectable_keys(rows: Iterable[Any], adapters: Mapping[str, Any] | None = None) -> frozenset:
    """The keys of ``rows`` (a comparison) that :func:`row_selectable` allows."""
    return frozenset(r.key for r in rows if row_selectable(r, adapters))


def payload_from_comparison(cmp: Comparison, *, source: str = "", model: str = "") -> dict:
    """The widget's tree payload: :func:`sd_widgets.compare._tree.serialise` of ``cmp``.

    Module entries and their order are :meth:`Comparison.module_children`, tensor entries the
    comparison's rows (the same payload :meth:`Comparison.tree` nests).
    """
    payload = serialise(cmp.module_children(), cmp.module_types, source=source, model=model)
    mismatch = cmp.config_mismatch()
    if mismatch is not None:  # one sentence for the summary strip instead of many rows
        payload["diagnosis"] = mismatch.sentence
    return payload


def empty_payload(*, source: str = "", model: str = "") -> dict:
    """A payload with no rows (shown when the checkpoint could not be read)."""
    return serialise({"": []}, {}, source=source, model=model)


@dataclass
class TreeIndex:
    """Lookups over one payload, built once per payload (all O(1) or O(subtree))."""

    payload: Mapping[str, Any]
    _entry_of_key: dict[str, int] = field(init=False, repr=False)
    _entry_of_module: dict[str, int] = field(init=False, repr=False)
    _keys: list[str] = field(init=False, repr=False)
    #: the last ``selectable`` frozenset seen and its keys in tree order (see :meth:`ordered`)
    _ordered: tuple[frozenset[str], tuple[str, ...]] | None = field(
        init=False, repr=False, compare=False, default=None
    )

    def __post_init__(self) -> None:
        cols = self.payload["columns"]
        is_row, paths = cols["t"], cols["path"]
        if len(is_row) != len(paths):
            raise ValueError(f"a tree payload of {len(is_row)} entries has {len(paths)} paths")
        is_module = [1 - t for t in is_row]
        entries = range(len(paths))
        self._keys = list(compress(paths, is_row))

        def first_entry(names: list[str], at: list[int]) -> dict[str, int]:
            """Name → its first entry (built in C: reversed, so the first one stays)."""
            return dict(zip(reversed(names), reversed(at), strict=True))

        self._entry_of_key = first_entry(self._keys, list(compress(entries, is_row)))
        self._entry_of_module = first_entry(
            list(compress(paths, is_module)), list(compress(entries, is_module))
        )

    @property
    def columns(self) -> Mapping[str, list]:
        """The payload's columns (one list per field, one entry per node)."""
        return self.payload["columns"]

    @property
    def keys(self) -> list[str]:
        """Row keys in tree order (computed once per payload; do not mutate)."""
        return self._keys

    def __contains__(self, key: object) -> bool:
        return key in self._entry_of_key

    def status(self, key: str) -> str:
        """The status string of tensor ``key``."""
        return self.payload["statuses"][self.columns["status"][self._entry_of_key[key]]]

    def row(self, key: str) -> dict[str, Any]:
        """One tensor row as a dict (dtype indices resolved to names)."""
        i = self._entry_of_key[key]
        out = {c: self.columns[c][i] for c in _COLUMNS}
        out["status"] = self.payload["statuses"][out["status"]]
        for side in ("ckpt", "model"):
            d = out[f"{side}_dtype"]
            out[f"{side}_dtype"] = None if d is None else self.payload["dtypes"][d]
            present = out["sides"] & (1 if side == "ckpt" else 2)
            if out[f"{side}_key"] is None and present:
                out[f"{side}_key"] = key
        return out

    def subtree_keys(self, path: str) -> list[str]:
        """Row keys under module ``path`` ("" is the whole tree), or ``[path]`` for a row key."""
        if path == "":
            return list(self.keys)
        i = self._entry_of_module.get(path)
        if i is None:
            if path in self._entry_of_key:
                return [path]
            raise KeyError(f"{path!r} is neither a module path nor a row key of this tree")
        cols = self.columns
        return [cols["path"][j] for j in range(i + 1, cols["end"][i]) if cols["t"][j] == 1]

    def resolve(self, keys: Iterable[str] = (), modules: Iterable[str] = ()) -> list[str]:
        """Row keys named directly or through a module path, in tree order, without repeats.

        Works on entry indices (a subtree is a contiguous range), so a click on a module costs
        its subtree, not the whole tree.
        """
        keys, modules = list(keys), list(modules)
        if not keys and len(modules) == 1:  # the common click: one module node
            return self.subtree_keys(modules[0])
        entries: set[int] = set()
        for k in keys:
            i = self._entry_of_key.get(k)
            if i is None:
                raise KeyError(f"{k!r} is not a row key of this tree")
            entries.add(i)
        cols = self.columns
        t, end = cols["t"], cols["end"]
        everything = False
        for m in modules:
            if m == "":
                everything = True
                continue
            i = self._entry_of_module.get(m)
            if i is None:
                if m not in self._entry_of_key:
                    raise KeyError(f"{m!r} is neither a module path nor a row key of this tree")
                entries.add(self._entry_of_key[m])
                continue
            entries.update(j for j in range(i + 1, end[i]) if t[j] == 1)
        if everything:
            return list(self.keys)
        path = cols["path"]
        return [path[j] for j in sorted(entries)]

    def ordered(self, allowed: Collection[str]) -> tuple[str, ...]:
        """The row keys in ``allowed``, in tree order.

        Remembered for the last frozenset passed (the widget passes the same one on every click
        until the comparison or the adapters change), so a click's selection is cleaned with
        one C-level filter over these keys instead of a Python test per row.
        """
        if isinstance(allowed, frozenset):
            cached = self._ordered
            if cached is not None and cached[0] is allowed:
                return cached[1]
            out = tuple(filter(allowed.__contains__, self._keys))
            self._ordered = (allowed, out)
            return out
        return tuple(k for k in self._keys if k in allowed)


def tree_to_json(value: Mapping[str, Any]) -> memoryview:
    r"""The tree payload as one binary buffer of UTF-8 JSON (the ``to_json`` of the trait).

    ipywidgets walks every list and dict of a trait's value looking for binary buffers before it
    sends it; for a 10,000-key tree that walk alone cost more than building the payload. One
    buffer is sent as it is. ``ensure_ascii`` keeps lone surrogates from hostile keys encodable
    (``"\udc80"`` in the JSON text, the same character again after ``JSON.parse``), and NaN is
    refused as the kernel's own JSON encoder refuses it. The payload is built of fresh lists
    and dicts (:func:`~sd_widgets.compare._tree.serialise`), never a cycle, so the encoder does
    not keep a set of the containers it is inside (one insert and delete per list).
    """
    text = json.dumps(
        value, separators=(",", ":"), ensure_ascii=True, allow_nan=False, check_circular=False
    )
    return memoryview(text.encode("ascii"))
