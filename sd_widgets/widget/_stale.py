"""The Explorer's staleness watch: has the model changed outside the widget? Public torch only.

Three kinds of change, each seen through a public torch API:

- **A tensor or module replaced** (``model.fc.weight = nn.Parameter(...)``, ``model.fc =
  nn.Linear(...)``, ``register_buffer``, ``load_state_dict(assign=True)``, ``weight_norm``):
  torch calls the global registration hooks
  (``torch.nn.modules.module.register_module_{parameter,buffer,module}_registration_hook``)
  for every such assignment. The hooks only note ``(module, name)``; after a cell in which
  something was registered anywhere, the notes are matched against the model's modules (one walk
  over them, only then).
- **An optimizer step** (``torch.optim.optimizer.register_optimizer_step_post_hook``, global):
  the parameters of a stepped optimizer that require grad and belong to the model.
- **Values written in place** (``with torch.no_grad(): w.mul_(2)``, a plain ``load_state_dict``,
  ``p.data = ...``, ``model.half()``): a 64-bit fingerprint of the values
  (:func:`sd_widgets.load._transaction.fingerprint`, the one the undo guard uses), with the
  tensor's identity, shape and dtype, of as many tensors as one check reads within
  :data:`VALUE_CHECK_SECONDS`: the tensors the latest load wrote (what the results describe)
  first, then the model's in order. A small model is watched whole.

Not seen after a cell: an in-place write to a tensor outside that set, e.g. one weight of a
model too large to read after every cell. ``Undo`` still refuses over it (the load's own
fingerprints) and the stale banner then names it.

Not used: load hooks on the user's modules (they would change what the comparison and the
transaction see as the modules' own loading code, and be copied and pickled with the model:
``torch.save(model)`` of a hook closure fails), and ``tensor._version`` (private).
"""

from __future__ import annotations

import weakref
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.modules import module as torch_module
from torch.nn.parameter import is_lazy
from torch.optim.optimizer import register_optimizer_step_post_hook

from ..load._transaction import fingerprint

VALUE_CHECK_SECONDS = 0.020
"""What one after-cell check may spend reading values (cost estimated by the two below)."""

SECONDS_PER_TENSOR = 25e-6
"""Fixed cost of checking one tensor: its fingerprint's set-up, identity, shape and dtype
(``benchmarks/bench_stale.py`` measures 10-21 µs for a small tensor, 2 cores, under load)."""

BYTES_PER_SECOND = 4e9
"""Fingerprint throughput assumed on a large tensor: a third of what ``bench_stale.py`` measures
on 2 idle cores (12.7 GB/s), since the check runs after every cell on machines doing other work
(the estimate bounds a check to 20 ms; a lower one reads fewer bytes, never more)."""


@dataclass
class _Value:
    """One tensor whose value is watched: where it lives and what it was."""

    key: str
    module: nn.Module
    attr: str
    ref: weakref.ref[torch.Tensor]
    shape: torch.Size | None  # None: a lazy module's parameter, not initialised (no shape yet)
    dtype: torch.dtype
    print_: int | None  # fingerprint; None: not read (meta, another device, a subclass)

    def changed(self) -> bool:
        now = getattr(self.module, self.attr, None)
        if not isinstance(now, torch.Tensor) or now is not self.ref():
            return True
        was_lazy, lazy = self.shape is None, is_lazy(now)
        if was_lazy or lazy:  # a forward pass gives a lazy parameter its shape in place
            return was_lazy != lazy
        if now.shape != self.shape or now.dtype != self.dtype:
            return True
        return self.print_ is not None and fingerprint(now) != self.print_


def named_tensors(model: nn.Module) -> Iterator[tuple[str, nn.Module, str, torch.Tensor]]:
    """``(key, module, attribute, tensor)`` of every parameter and buffer, in model order."""
    for path, module in model.named_modules(remove_duplicate=False):
        prefix = f"{path}." if path else ""
        for attr, p in module.named_parameters(recurse=False, remove_duplicate=False):
            yield prefix + attr, module, attr, p
        for attr, b in module.named_buffers(recurse=False, remove_duplicate=False):
            yield prefix + attr, module, attr, b


def _readable(t: torch.Tensor) -> bool:
    """Whether the watch reads ``t``'s values (a plain tensor in CPU memory).

    Not an inference tensor (made under ``torch.inference_mode()``): the fingerprint reads
    through a view, which torch allows on such a tensor only inside that mode, and the check
    runs outside it (where no one can write it in place either).
    """
    return (
        type(t) in (torch.Tensor, nn.Parameter) and t.device.type == "cpu" and not t.is_inference()
    )


def _cost(t: torch.Tensor) -> float:
    nbytes = t.numel() * t.element_size() if _readable(t) else 0
    return SECONDS_PER_TENSOR + nbytes / BYTES_PER_SECOND


def _value(key: str, module: nn.Module, attr: str, t: torch.Tensor) -> _Value:
    return _Value(
        key,
        module,
        attr,
        weakref.ref(t),
        None if is_lazy(t) else t.shape,
        t.dtype,
        fingerprint(t) if _readable(t) else None,  # (never a lazy one: not a plain type)
    )


class ModelWatch:
    """What :meth:`Explorer.check_stale` compares the model with; see the module's docstring.

    :meth:`rebaseline` takes the model as it is now as the baseline (after the widget's own load,
    undo or refresh); :meth:`changed` lists the keys changed since, in model order. The global
    hooks are registered while the watch lives and removed by :meth:`close` (or when it is
    collected).
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        #: keys known to have changed (optimizer steps, registrations, an undo's refusal)
        self._marked: set[str] = set()
        self._values: list[_Value] = []
        #: (module, name) registered anywhere since the last check, and optimizers stepped
        self._registered: list[tuple[weakref.ref[nn.Module], str, bool]] = []
        self._stepped: weakref.WeakSet[torch.optim.Optimizer] = weakref.WeakSet()
        #: the changed keys last put in model order, and that order
        self._ordered: tuple[frozenset[str], list[str]] = (frozenset(), [])
        #: ids of the model's modules (and of modules later registered into them): the hooks
        #: note only registrations into these, so nothing piles up while other models are built
        self._ids: set[int] = set()
        registered, stepped, ids = self._registered, self._stepped, self._ids

        def on_tensor(module: nn.Module, name: str, _value: Any) -> None:
            if id(module) in ids:
                registered.append((weakref.ref(module), name, False))

        def on_module(module: nn.Module, name: str, value: Any) -> None:
            if id(module) in ids:
                registered.append((weakref.ref(module), name, True))
                if isinstance(value, nn.Module):
                    ids.update(id(m) for m in value.modules())

        def on_step(optimizer: torch.optim.Optimizer, _args: Any, _kwargs: Any) -> None:
            stepped.add(optimizer)

        # the hooks hold the two containers, not the watch: a forgotten watch is collected and
        # its finaliser removes them
        self._handles = [
            torch_module.register_module_parameter_registration_hook(on_tensor),
            torch_module.register_module_buffer_registration_hook(on_tensor),
            torch_module.register_module_module_registration_hook(on_module),
            register_optimizer_step_post_hook(on_step),
        ]
        self._finalizer = weakref.finalize(self, _remove, list(self._handles))

    def close(self) -> None:
        """Remove the global hooks (the Explorer was closed)."""
        self._finalizer()

    def rebaseline(self, keys: Collection[str] | None = None, first: Iterable[str] = ()) -> None:
        """Take the model as it is now as the baseline.

        ``keys``: only those (and any tensor object they share, a tied weight); every other
        tensor keeps its baseline, so a change made outside the widget stays a change. ``first``:
        the keys whose values to watch first (the latest load's).
        """
        if keys is None:
            self._marked.clear()
            self._registered.clear()
            self._stepped.clear()
            self._ids.clear()
            self._ids.update(id(m) for _, m in self.model.named_modules(remove_duplicate=False))
            self._values = self._choose_values(first, {})
            return
        # what was registered or stepped until now is noted first: the rebaselined keys' notes
        # (an undo that puts tensor objects back) are then cleared with them, the others kept
        self._take_registrations()
        self._take_steps()
        shared = {id(v.ref()) for v in self._values if v.key in keys and v.ref() is not None}
        again = set(keys) | {v.key for v in self._values if id(v.ref()) in shared}
        self._marked -= again
        kept = {v.key: v for v in self._values if v.key not in again}
        self._values = self._choose_values(first, kept)

    def mark(self, keys: Iterable[str]) -> None:
        """Keys found changed by someone else (an undo that refused over them)."""
        self._marked.update(keys)

    def changed(self) -> list[str]:
        """Keys changed since the baseline, in model order (registered, stepped, read)."""
        self._take_registrations()
        self._take_steps()
        changed = self._marked | {v.key for v in self._values if v.changed()}
        if not changed:
            return []
        if changed != self._ordered[0]:
            position = {k: i for i, (k, *_) in enumerate(named_tensors(self.model)) if k in changed}
            order = sorted(changed, key=lambda k: (k not in position, position.get(k, 0), k))
            self._ordered = (frozenset(changed), order)
        return list(self._ordered[1])

    # ----------------------------------------------------------------------------------------
    def _choose_values(self, first: Iterable[str], kept: dict[str, _Value]) -> list[_Value]:
        """The tensors whose values a check reads: ``first``, then the model's, within budget.

        ``kept``: baselines to keep as they are (tensors not rebaselined).
        """
        out: list[_Value] = []
        seen: set[str] = set()
        budget = VALUE_CHECK_SECONDS
        for key, module, attr, t in _chain_first(self.model, first):
            if key in seen:
                continue
            seen.add(key)
            cost = _cost(t)
            if cost > budget:
                continue
            budget -= cost
            old = kept.get(key)
            out.append(old if old is not None and old.ref() is t else _value(key, module, attr, t))
            if budget < SECONDS_PER_TENSOR:
                break
        return out

    def _take_registrations(self) -> None:
        if not self._registered:
            return
        events = list(self._registered)
        del self._registered[: len(events)]
        paths: dict[int, tuple[nn.Module, list[str]]] = {}
        for path, module in self.model.named_modules(remove_duplicate=False):
            paths.setdefault(id(module), (module, []))[1].append(f"{path}." if path else "")
        for ref, name, is_module in events:
            module = ref()
            entry = paths.get(id(module)) if module is not None else None
            if entry is None or entry[0] is not module:
                continue  # another model's (or a comparison's meta twin's)
            for prefix in entry[1]:
                child = getattr(module, name, None) if is_module else None
                keys = (
                    [f"{prefix}{name}.{k}" for k, *_ in named_tensors(child)]
                    if isinstance(child, nn.Module)
                    else []
                )
                self._marked.update(keys or [prefix + name])

    def _take_steps(self) -> None:
        optimizers = list(self._stepped)
        if not optimizers:
            return
        self._stepped.clear()
        ids = {
            id(p)
            for opt in optimizers
            for group in opt.param_groups
            for p in group["params"]
            if p.requires_grad
        }
        self._marked.update(
            k for k, p in self.model.named_parameters(remove_duplicate=False) if id(p) in ids
        )


def _chain_first(
    model: nn.Module, first: Iterable[str]
) -> Iterator[tuple[str, nn.Module, str, torch.Tensor]]:
    for key in first:
        path, _, attr = key.rpartition(".")
        try:
            module = model.get_submodule(path)
        except AttributeError:
            continue
        t = getattr(module, attr, None)
        if isinstance(t, torch.Tensor):
            yield key, module, attr, t
    yield from named_tensors(model)


def _remove(handles: list[Any]) -> None:
    for handle in handles:
        handle.remove()
