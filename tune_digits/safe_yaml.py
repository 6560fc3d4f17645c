"""A YAML loader whose output grows linearly with its text (no "billion laughs")."""

from __future__ import annotations

from typing import Any

import yaml

MAX_ALIASES = 100


class AliasError(Exception):
    """Raised by :class:`BoundedLoader` for an alias it does not expand."""


class BoundedLoader(yaml.SafeLoader):
    """SafeLoader whose output grows linearly with the text: at most MAX_ALIASES aliases, none to a list or
    mapping (nested aliases of collections, a "billion laughs", expand exponentially)."""

    aliases = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                raise AliasError(f"more than {MAX_ALIASES} YAML aliases (*name)")
            if isinstance(self.anchors.get(event.anchor), yaml.CollectionNode):
                line = event.start_mark.line + 1
                raise AliasError(f"line {line}: alias *{event.anchor} repeats a list or mapping; write it out")
        return super().compose_node(parent, index)


def load_bounded(text: str) -> Any:
    """``yaml.safe_load(text)`` through :class:`BoundedLoader`; raises AliasError or yaml.YAMLError."""
    loader = BoundedLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()
