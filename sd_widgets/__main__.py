"""``python -m sd_widgets``: the ``sd-widgets`` command (see :mod:`sd_widgets.cli`)."""

from __future__ import annotations

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
