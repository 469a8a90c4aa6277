"""Import slixmpp without paying for `importlib.metadata` (~16-22 ms per run).

slixmpp 1.17 reads its own version through `importlib.metadata.version("slixmpp")` at
import time, which pulls in the email parser and scans site-packages. cvsmsg never uses
that version. While slixmpp imports, a stand-in answers from the `*.dist-info` directory
name; it is removed right after, so any later `import importlib.metadata` gets the real
module. If anything is unusual, slixmpp is imported the normal way. (Belongs in slixmpp:
a version constant written at build time.)
"""

from __future__ import annotations

import importlib.util
import os
import sys
import types


def _version_from_dist_info() -> str | None:
    spec = importlib.util.find_spec("slixmpp")
    if spec is None or not spec.origin:
        return None
    site = os.path.dirname(os.path.dirname(spec.origin))
    for name in os.listdir(site):
        if name.startswith("slixmpp-") and name.endswith(".dist-info"):
            return name[len("slixmpp-"):-len(".dist-info")]
    return None


def import_slixmpp() -> types.ModuleType:
    """`import slixmpp`, skipping the metadata machinery when it is not loaded yet."""
    if "slixmpp" in sys.modules or "importlib.metadata" in sys.modules:
        import slixmpp

        return slixmpp
    found = _version_from_dist_info()
    if found is None:
        import slixmpp

        return slixmpp

    stand_in = types.ModuleType("importlib.metadata")

    class PackageNotFoundError(ModuleNotFoundError):
        pass

    def version(name: str) -> str:
        if name == "slixmpp":
            return found
        raise PackageNotFoundError(name)

    stand_in.PackageNotFoundError = PackageNotFoundError  # type: ignore[attr-defined]
    stand_in.version = version  # type: ignore[attr-defined]
    sys.modules["importlib.metadata"] = stand_in
    try:
        import slixmpp
    finally:
        if sys.modules.get("importlib.metadata") is stand_in:
            del sys.modules["importlib.metadata"]
        # `importlib.metadata` as an attribute of `importlib` must not be the stand-in
        # either (the import system set it when we registered the module).
        import importlib

        if getattr(importlib, "metadata", None) is stand_in:
            del importlib.metadata
    return slixmpp


import_slixmpp()
