"""The tables of named pieces (``activations.ACTIVATIONS``, ``losses.LOSSES``): what they share.

A registry maps a name to an entry (a frozen dataclass with ``name`` and
``compiled``, the entry's code in the compiled kernels or ``None``). Entries are
added by the module that defines them; a test may add one and remove it again.
"""

from __future__ import annotations

from typing import Any

LEDGER_STEPS = ("alloc", "free", "elide")
"""The steps of a memory walk (``memory.estimate``): an array is allocated, freed,
or computed from a temporary one (``elide``: NumPy reuses a large temporary's buffer)."""


class Registry(dict):
    """Entries of one kind (``kind``, their class ``entry_type``) by name, in the order added."""

    def __init__(self, kind: str, entry_type: type) -> None:
        super().__init__()
        self.kind, self.entry_type = kind, entry_type

    def add(self, entry: Any) -> Any:
        """Add ``entry``; returns it. Raises if it is not an ``entry_type``, its name is
        empty or taken, or its compiled code is another entry's."""
        if not isinstance(entry, self.entry_type):
            raise TypeError(f"{self.kind} must be a {self.entry_type.__name__}, got {entry!r}")
        if not isinstance(entry.name, str) or not entry.name:
            raise ValueError(f"{self.kind}.name must be a non-empty string, got {entry.name!r}")
        if entry.name in self:
            raise ValueError(f"{self.kind} {entry.name!r} is registered already")
        taken = {other.compiled: other.name for other in self.values() if other.compiled is not None}
        if entry.compiled is not None and entry.compiled in taken:
            raise ValueError(f"compiled code {entry.compiled} is {taken[entry.compiled]}'s")
        self[entry.name] = entry
        return entry

    def remove(self, name: str) -> None:
        """Remove the entry ``name``."""
        if name not in self:
            raise ValueError(f"{self.kind} {name!r} is not registered")
        del self[name]


def check_steps(name: str, steps: object, units: tuple[str, ...]) -> None:
    """Raise unless ``steps`` is a tuple of ``(step, unit)`` pairs: :data:`LEDGER_STEPS`, ``units``."""
    if not isinstance(steps, tuple) or not all(
            isinstance(s, tuple) and len(s) == 2 and s[0] in LEDGER_STEPS and s[1] in units
            for s in steps):
        raise ValueError(f"{name} must be a tuple of (step, unit) pairs, step one of "
                         f"{LEDGER_STEPS} and unit one of {units}, got {steps!r}")
