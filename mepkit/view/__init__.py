"""The live view: a page in the browser that shows a live session as it runs.

`LiveView` serves one self-contained page (no network resources) on ``127.0.0.1``
and JSON the page polls. It is fed by a `mepkit.live.LiveSession` (its trials and
status) and optionally by a protocol (its estimate and steps). See ``docs/live.md``.
`LiveView` loads on first use, so the command line's ``--help`` stays fast.
"""

from __future__ import annotations

from typing import Any

__all__ = ["LiveView", "DEFAULT_HOST", "DEFAULT_PORT"]

#: Address the page is served on: this machine only, unless another is asked for.
DEFAULT_HOST = "127.0.0.1"
#: Port of the page (``--view-port``); 0 picks a free one.
DEFAULT_PORT = 8765


def __getattr__(name: str) -> Any:
    if name == "LiveView":
        from mepkit.view.live import LiveView

        return LiveView
    raise AttributeError(f"module 'mepkit.view' has no attribute {name!r}")
