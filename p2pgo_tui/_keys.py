"""Key tables for the help screen, read from the bindings themselves so they never drift."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from textual.app import App
from textual.binding import Binding, BindingsMap, BindingType

__all__ = ["key_rows"]


def key_rows(app: App[Any], *sources: Iterable[BindingType]) -> list[tuple[str, str]]:
    """``(keys, description)`` rows, one per action, keys joined in binding order."""
    keys: dict[str, list[str]] = {}
    for bindings in sources:
        for _, binding in BindingsMap(bindings):
            assert isinstance(binding, Binding)
            description = binding.description or binding.action.replace("_", " ")
            shown = app.get_key_display(binding)
            entry = keys.setdefault(description, [])
            if shown not in entry:
                entry.append(shown)
    return [(" / ".join(k), description) for description, k in keys.items()]
