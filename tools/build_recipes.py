"""Write the built-in profiles to recipes/ from PS3.15 Table E.1-1.

Run from the repository root: ``python tools/build_recipes.py``. The test
suite fails when a committed recipe differs from what this would write.
"""

from __future__ import annotations

from pathlib import Path

from exporter.policy.profile import NAMED_PROFILES, build_recipe


def main() -> None:
    """Regenerate every profile file."""
    target = Path(__file__).resolve().parent.parent / "recipes"
    for name, (options, _) in NAMED_PROFILES.items():
        (target / name).write_text(build_recipe(options), encoding="utf-8")
        print(f"wrote recipes/{name}")


if __name__ == "__main__":
    main()
