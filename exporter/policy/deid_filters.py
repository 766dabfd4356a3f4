"""The %filter rules deid ships (manufacturer and model signatures), as a layer.

They are read from the installed deid package, not copied here: the layer is
whatever that deid version ships, and its name and version go into the
recipe's text, so into the export id and the provenance. Only the %filter
sections are taken; deid's %header sections are its own site's policy.
"""

from __future__ import annotations

from importlib import metadata, resources

from exporter.errors import SettingsError
from exporter.policy.recipe import CompiledRecipe, compile_recipe, compose

SHIPPED = {
    "deid": "deid.dicom",  # CT/MR/CR screen saves, dose reports, localizers
    "deid-ultrasound": "deid.dicom.ultrasound",  # blank all but the US regions
    "deid-xray-chest": "deid.dicom.xray.chest",  # chest radiographs only
}


def shipped_filters(name: str) -> CompiledRecipe:
    """The %filter sections of one of deid's shipped recipes, compiled.

    Raises
    ------
    SettingsError
        For a name deid does not ship.
    """
    if name not in SHIPPED:
        raise SettingsError(
            f"unknown filter set {name!r}; choose from {', '.join(sorted(SHIPPED))}"
        )
    file = SHIPPED[name]
    text = resources.files("deid").joinpath("data", file).read_text(encoding="utf-8")
    version = metadata.version("deid")
    lines = [f"# %filter rules of {file} as shipped with deid {version}", ""]
    keep = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.lower().startswith("format"):
            lines.append(line)
        elif stripped.startswith("%"):
            keep = stripped.lower().startswith("%filter")
            lines.append(line if keep else f"# (deid's {stripped} left out)")
        elif keep:
            lines.append(line)
    return compile_recipe("\n".join(lines) + "\n", f"deid-{version}/{file}")


def with_filters(policy: CompiledRecipe, names: tuple[str, ...]) -> CompiledRecipe:
    """``policy`` with the named filter sets layered on it, in order."""
    for name in names:
        shipped = shipped_filters(name)
        policy = compose(policy, shipped, f"{policy.path} + {shipped.path}")
    return policy


def describe(filters: dict[str, object] | None) -> str | None:
    """How many rules of each list a compiled recipe holds, in words."""
    if not filters:
        return None
    lists = filters.get("filter")
    if not isinstance(lists, dict):
        return None
    counts = []
    for group in ("blacklist", "graylist", "whitelist"):
        items = lists.get(group) or []
        if not items:
            continue
        if group == "graylist":
            regions = sum(1 for item in items if item.get("coordinates"))
            counts.append(
                f"{len(items)} graylist ({regions} with regions, "
                f"{len(items) - regions} that only flag)"
            )
        elif group == "whitelist":
            counts.append(f"{len(items)} whitelist (ignored)")
        else:
            counts.append(f"{len(items)} blacklist")
    return "%filter rules: " + ", ".join(counts) + "." if counts else None
