"""The one error type for bad configuration: it names the file, the key path and the fix."""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration problem a person must fix; the message never carries a secret value."""

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None, fix: str | None = None):
        self.file = file
        self.key = key
        self.fix = fix
        self.problem = message
        super().__init__(self._render())

    def _render(self) -> str:
        where = ": ".join(p for p in (self.file, self.key) if p)
        text = f"{where}: {self.problem}" if where else self.problem
        if self.fix:
            text += f" ({self.fix})"
        return text
