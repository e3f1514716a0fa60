"""Selecting keys: the selection gestures, and the one way a selection is cleaned and set."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from . import _payload as pl
from ._actions import action

if TYPE_CHECKING:
    from ._explorer import Explorer


# selection ------------------------------------------------------------------------------
@action("toggle", "Selecting")
def toggle(w: Explorer, c: Mapping[str, Any]) -> None:
    select_by(w, pl.toggle, c)


@action("select_range", "Selecting a range")
def select_range(w: Explorer, c: Mapping[str, Any]) -> None:
    select_by(w, pl.apply_range, c, select=bool(c.get("select", True)))


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
def select_all_loadable(w: Explorer, _c: Mapping[str, Any]) -> None:
    set_clean_selection(w, w._selectable_keys())


@action("select_none", "Clearing the selection")
def select_none(w: Explorer, _c: Mapping[str, Any]) -> None:
    w.selected_keys = []


def strs(content: Mapping[str, Any], name: str) -> list[str]:
    value = content.get(name) or []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]
