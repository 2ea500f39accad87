"""The Dispatch-style function model on top of the worker runtime (see docs/functions.md).

It imports the worker layer only through `anyiii._worker`, never the reverse.
"""

from __future__ import annotations
