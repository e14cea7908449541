"""params.yaml's text, parsed: the YAML reader of load_params(), and recipes applied to it.

The reader refuses what DVC refuses (a key given twice in one mapping) and an empty file, in one
line naming the file, before any validation or stage runs. It reads numbers as DVC does (YAML
1.2): `5e-05`, which `dvc exp run -S key=0.00005` writes, is a float, not the string PyYAML's
YAML 1.1 rules make of it.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml

from denoise.core.errors import ConfigError


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader that refuses a key given twice in one mapping, as DVC does."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            if key in seen:
                line = key_node.start_mark.line + 1
                raise yaml.YAMLError(f"line {line}: duplicate key {key!r}")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


# YAML 1.2's floats, which YAML 1.1 (PyYAML) reads as strings when they lack a dot: 5e-05, 1E3.
_UniqueKeyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def read_values(path: str | Path = "params.yaml") -> dict[str, Any]:
    """params.yaml's mapping as parsed, unvalidated; ConfigError naming the file on a missing
    or empty file, bad YAML or a duplicate key."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such parameters file") from None
    try:
        values = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({error})".replace("\n", " ")) from None
    if values is None:
        raise ConfigError(f"{path}: empty; it must set every section")
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return values


def with_recipe(values: dict[str, Any], name: str) -> dict[str, Any]:
    """A params.yaml mapping with recipe `name`'s {dotted key: value} settings applied."""
    recipes = values.get("recipes") or {}
    if name not in recipes:
        raise ConfigError(f"recipes: no recipe {name!r} (known: {', '.join(recipes) or 'none'})")
    changed = copy.deepcopy(values)
    for dotted, value in recipes[name].items():
        *parents, leaf = str(dotted).split(".")
        node = changed
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"recipes.{name}.{dotted}: {part} is not a section")
        node[leaf] = value
    return changed
