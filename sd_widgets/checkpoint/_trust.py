"""Which pickled globals can run code: the line between ``trust=[...]`` and ``trust=True``.

A pickle calls the globals it names with arguments the file chooses. Allowing a data class
(``argparse.Namespace``, a dataclass of hyper-parameters) lets the file build one; allowing
``eval``, ``os.system``, ``getattr`` or ``subprocess.Popen`` lets it run anything. sd_widgets
therefore never offers, and refuses to accept, ``trust=[...]`` / ``--allow`` for a global that
can run code: such a file opens only with ``trust=True``, which says what it means.

The knowledge of which globals are dangerous is picklescan's (a maintained scanner of pickle
files, used by the Hugging Face Hub): a name it classifies as dangerous under any split into
module and attribute runs code. :data:`ALSO_RUNS_CODE` adds the entry points picklescan's list
does not name (``importlib``, ``marshal``, ``__import__``, torch's own loaders and compilers),
and anything that is not a plain dotted name of identifiers, or is a non-class builtin, is
treated as code too (fail closed). ``tests/test_security.py`` pins the classification.
"""

from __future__ import annotations

import builtins
import io
import logging
import re
import types
from collections.abc import Iterable
from typing import Any

#: module prefixes (``"importlib"`` covers ``importlib.util.x``) and exact names that run code
#: and that picklescan's list does not name; checked after picklescan
ALSO_RUNS_CODE = frozenset(
    {
        "importlib",
        "imp",
        "marshal",
        "code",
        "codeop",
        "multiprocessing",
        "_thread",
        "threading",
        "signal",
        "io",
        "tempfile",
        "dill",
        "cloudpickle",
        "joblib",
        "copyreg",
        "types.FunctionType",
        "types.LambdaType",
        "types.MethodType",
        "types.ModuleType",
        "types.new_class",
        "functools",
        "operator",
        "_operator",
        "numpy.load",
        "numpy.lib.npyio",
        "torch.load",
        "torch.hub",
        "torch.jit",
        "torch.package",
        "torch.fx",
        "torch.compile",
        "torch.compiler",
        "torch._dynamo",
        "torch._inductor",
        "torch.library",
        "torch.ops",
        "torch._ops",
        "torch._C",
        "torch.utils.cpp_extension",
        "torch.distributed.rpc",
        "torch.storage._load_from_bytes",
        # classes whose constructors open files or connections
        "zipfile",
        "tarfile",
        "shelve",
        "dbm",
        "sqlite3",
        "http",
        "urllib",
        "ftplib",
        "smtplib",
        "xmlrpc",
        "logging",
    }
)

#: builtins that are plain data types; every other builtin (eval, exec, getattr, setattr,
#: __import__, open, type, ...) runs code or reaches into the process
_DATA_BUILTINS = frozenset(
    {
        "bool",
        "bytearray",
        "bytes",
        "complex",
        "dict",
        "float",
        "frozenset",
        "int",
        "list",
        "range",
        "set",
        "slice",
        "str",
        "tuple",
    }
)

_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+")

_log = logging.getLogger("picklescan")
_log.addHandler(logging.NullHandler())  # its "dangerous import FOUND" is ours to report


def _picklescan(pairs: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """The verdict of picklescan (``"dangerous"``, ``"innocuous"``, ``"suspicious"``) per pair."""
    from picklescan.scanner import scan_pickle_bytes  # type: ignore[import-untyped]

    # a protocol-0 pickle naming each pair with GLOBAL: what picklescan scans in a file
    raw = b"".join(b"c" + m.encode() + b"\n" + n.encode() + b"\n" for m, n in pairs) + b"."
    result = scan_pickle_bytes(io.BytesIO(raw), "sd_widgets trust check", multiple_pickles=False)
    return {(g.module, g.name): g.safety.value for g in result.globals}


def _runs_code(name: Any, is_class: bool | None, listed_only: bool = False) -> bool:
    """One global: True unless it is data-like (see :func:`code_globals`).

    ``listed_only``: only what the lists say (picklescan's dangerous globals,
    :data:`ALSO_RUNS_CODE`, builtins, names that are not names), not that every unknown
    function is code.
    """
    if not isinstance(name, str) or not _DOTTED.fullmatch(name) or "unknown" in name:
        return True
    parts = name.split(".")
    if parts[0] in ("builtins", "__builtin__"):
        return len(parts) != 2 or parts[1] not in _DATA_BUILTINS
    if any(".".join(parts[:i]) in ALSO_RUNS_CODE for i in range(1, len(parts) + 1)):
        return True
    verdicts = _picklescan(
        [(".".join(parts[:i]), ".".join(parts[i:])) for i in range(1, len(parts))]
    )
    if "dangerous" in verdicts.values():
        return True
    if listed_only:
        return False
    if verdicts.get((".".join(parts[:-1]), parts[-1])) == "innocuous":
        return False  # on picklescan's list of safe globals (numpy's array rebuild, ...)
    # anything else is data-like only if it is a class: calling a function is running code
    return not (is_class if is_class is not None else parts[-1][:1].isupper())


def code_globals(names: Iterable[str]) -> list[str]:
    """The names among ``names`` that can run code when a pickle calls them.

    Parameters
    ----------
    names
        ``"module.name"`` strings, as a pickle names globals (``"posix.system"``,
        ``"argparse.Namespace"``); names from a file are untrusted and may be anything.

    Returns
    -------
    list of str
        Those that run code, in the order given, without duplicates: everything picklescan
        classifies as dangerous under any split into module and attribute, the names under
        :data:`ALSO_RUNS_CODE`, builtins other than plain data types, every name that is not
        a dotted name of identifiers, and every function not on picklescan's safe list. A
        name is taken for a class when its last part starts with a capital letter (nothing
        is imported to find out).
    """
    return [n for n in dict.fromkeys(names) if _runs_code(n, None)]


def listed_as_code(name: str) -> bool:
    """Whether ``name`` is on a list of globals that run code, or is no dotted name at all.

    The lists: picklescan's dangerous globals, :data:`ALSO_RUNS_CODE`, builtins other than data
    types. Narrower than :func:`code_globals`, which also counts every unknown function as code.
    """
    return _runs_code(name, None, listed_only=True)


def runs_code(obj: Any) -> str | None:
    """What an entry of ``trust=[...]`` would let a file run, or None for a data-like one.

    Parameters
    ----------
    obj
        A class or function, or an ``(obj, "module.name")`` pair as
        ``torch.serialization.safe_globals`` accepts.

    Returns
    -------
    str or None
        The ``"module.name"`` that runs code (a module object always does), or None. A class
        is data-like unless it is dangerous; a function only when picklescan lists it as safe.
    """
    if isinstance(obj, tuple) and len(obj) == 2:
        named = str(obj[1])
        return runs_code(obj[0]) or (named if _runs_code(named, isinstance(obj[0], type)) else None)
    if isinstance(obj, types.ModuleType):
        return obj.__name__
    name = f"{getattr(obj, '__module__', None)}.{getattr(obj, '__qualname__', None)}"
    short = str(getattr(obj, "__name__", ""))
    if short and getattr(builtins, short, None) is obj:
        name = f"builtins.{short}"  # eval, getattr, __import__ ... whatever __module__
    return name if _runs_code(name, isinstance(obj, type)) else None
