"""The Click that Typer runs on.

Recent Typer releases ship their own copy of Click (``typer._click``) and build every command
from that copy's classes, so code that extends those commands (our command class, parameter
callbacks, usage errors) must use the same copy; older releases used the ``click`` package.
Everything in ``mlgrid.cli`` imports Click from here.
"""

from __future__ import annotations

try:
    from typer import _click as click
except ImportError:  # Typer releases that depend on the click package
    import click  # type: ignore[no-redef]

__all__ = ["click"]
