"""Selecting keys: the selection gestures, and the one way a selection is cleaned and set."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ._actions import action
from ._tree_payload import TreeIndex

if TYPE_CHECKING:
    from ._explorer import Explorer


# --------------------------------------------------------------------------------------------
# selection: pure functions from (selection, gesture) to the new selection
# --------------------------------------------------------------------------------------------


def _targets(
    index: TreeIndex, keys: Iterable[str], modules: Iterable[str], selectable: Collection[str]
) -> list[str]:
    """The selectable keys a gesture covers (named, or under the named modules), in tree order."""
    return [k for k in index.resolve(keys, modules) if k in selectable]


def clean_selection(
    index: TreeIndex, selection: Iterable[str], *, selectable: Collection[str]
) -> list[str]:
    """Keep the selectable keys of ``selection``, in tree order, without repeats.

    ``selectable``: the keys that can be selected (:func:`selectable_keys` of the comparison).
    """
    wanted = selection if isinstance(selection, (set, frozenset)) else set(selection)
    if not wanted:
        return []
    return list(filter(wanted.__contains__, index.ordered(selectable)))


def toggle(
    index: TreeIndex,
    selection: Iterable[str],
    *,
    keys: Iterable[str] = (),
    modules: Iterable[str] = (),
    selectable: Collection[str],
) -> list[str]:
    """A click on rows/module nodes.

    When every selectable key they cover is selected, deselect them all; otherwise select them all.
    Keys that cannot be selected are left out.
    """
    current = set(selection)
    target = _targets(index, keys, modules, selectable)
    if target and current.issuperset(target):
        current.difference_update(target)
    else:
        current.update(target)
    return clean_selection(index, current, selectable=selectable)


def apply_range(
    index: TreeIndex,
    selection: Iterable[str],
    *,
    keys: Iterable[str] = (),
    modules: Iterable[str] = (),
    select: bool = True,
    selectable: Collection[str],
) -> list[str]:
    """A shift-click: give every selectable key in the range the state ``select``.

    The range is the visible rows between the anchor and the clicked row, collapsed module nodes
    standing for their subtree.
    """
    current = set(selection)
    target = _targets(index, keys, modules, selectable)
    if select:
        current.update(target)
    else:
        current.difference_update(target)
    return clean_selection(index, current, selectable=selectable)


# selection ------------------------------------------------------------------------------
@action("toggle", "Selecting")
def on_toggle(w: Explorer, c: Mapping[str, Any]) -> None:
    select_by(w, toggle, c)


@action("select_range", "Selecting a range")
def on_select_range(w: Explorer, c: Mapping[str, Any]) -> None:
    select_by(w, apply_range, c, select=bool(c.get("select", True)))


def select_by(
    w: Explorer, gesture: Callable[..., list[str]], c: Mapping[str, Any], **opts: Any
) -> None:
    """Apply a selection gesture to the ``keys`` and ``modules`` the message names.

    The gesture's result is already clean (selectable keys, tree order): the validator is
    told so and does not clean it a second time.
    """
    set_clean_selection(
        w,
        gesture(
            w._index,
            w.selected_keys,
            keys=strs(c, "keys"),
            modules=strs(c, "modules"),
            selectable=w._selectable_set(),
            **opts,
        ),
    )


def set_clean_selection(w: Explorer, clean: list[str]) -> None:
    """Set :attr:`selected_keys` to a list already clean (selectable keys in tree order)."""
    w._clean_selection = clean
    try:
        w.selected_keys = clean
    finally:
        w._clean_selection = None


@action("select_all_loadable", "Selecting all loadable keys")
def on_select_all_loadable(w: Explorer, _c: Mapping[str, Any]) -> None:
    set_clean_selection(w, w._selectable_keys())


@action("select_none", "Clearing the selection")
def on_select_none(w: Explorer, _c: Mapping[str, Any]) -> None:
    w.selected_keys = []


def strs(content: Mapping[str, Any], name: str) -> list[str]:
    value = content.get(name) or []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]
