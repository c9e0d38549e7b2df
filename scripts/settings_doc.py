"""Prints docs/configuration.md from the settings class, so the two never disagree.

Usage: python scripts/settings_doc.py > docs/configuration.md
"""

from __future__ import annotations

from server.settings import Settings

HEADER = """# Configuration

Every setting is an environment variable with the prefix `IMAGERECOGNIZE_`. This page is made
by `python scripts/settings_doc.py > docs/configuration.md` from `server/settings.py`.

| variable | default | meaning |
|---|---|---|
"""


FACTORY_DEFAULTS = {"decode_memory_mb": "¼ of physical memory, at most 1024"}


def render() -> str:
    rows = []
    for name, field in Settings.model_fields.items():
        if field.default_factory is not None:
            # Machine-dependent defaults: the description's first words say what they are.
            default = FACTORY_DEFAULTS.get(name, "number of usable cores")
        elif field.default is None:
            default = "(unset)"
        else:
            default = f"`{field.default}`"
        rows.append(f"| `IMAGERECOGNIZE_{name.upper()}` | {default} | {field.description} |")
    return HEADER + "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(render(), end="")
