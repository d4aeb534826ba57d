"""The system programs the tests, demo and benchmarks run for real, and a clear error when one is missing.

``make test`` must fail, not skip, when a component cannot be set up: a skipped test passes CI without
testing anything. Each check names what is missing and how to install it; ``scripts/system-packages.sh``
(``make system-packages``) installs the Debian packages.
"""

from __future__ import annotations

import shutil
from pathlib import Path

INSTALL = "run `make system-packages` (bash scripts/system-packages.sh installs Debian package {package})"


class MissingComponent(FileNotFoundError):
    """A component a test needs is not installed; the message says which and how to install it."""


def require_program(name: str, *, package: str, what: str, default: str | None = None,
                    path: str | None = None) -> str:
    """The path of program ``name``: found on ``path`` (default: PATH), else at ``default`` if it exists.

    Raises MissingComponent naming ``what`` (e.g. "BIND 9"), the program, where it was looked for and the
    Debian ``package`` to install.
    """
    found = shutil.which(name, path=path)
    if found:
        return found
    if default and Path(default).is_file():
        return default
    places = "PATH" if path is None else f"PATH={path}"
    if default:
        places += f" or {default}"
    raise MissingComponent(f"{what} is not installed: no {name} on {places}; "
                           + INSTALL.format(package=package))


def require_file(file: str | Path, *, package: str, what: str) -> Path:
    """``file`` when it exists; otherwise MissingComponent naming ``what`` and the Debian ``package``."""
    file = Path(file)
    if not file.exists():
        raise MissingComponent(f"{what} is not installed: {file} does not exist; " + INSTALL.format(package=package))
    return file
