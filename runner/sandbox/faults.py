"""Fault injection: which fault, if any, the next API call suffers.

Faults come from a scripted sequence (consumed one call at a time, then every
call is ``ok``) or from a probability per kind drawn with a seeded generator,
so a run with the same seed fails the same calls. Both can be replaced at
runtime through ``Faults.configure``.
"""

from __future__ import annotations

import random
from collections import deque

from .settings import FAULT_ALIASES, FaultSettings


class Faults:
    """Decides the fault for each call to the hunting endpoints."""

    def __init__(self, settings: FaultSettings) -> None:
        self.configure(settings)

    @property
    def settings(self) -> FaultSettings:
        """The fault plan in force."""
        return self._settings

    def configure(self, settings: FaultSettings) -> None:
        """Replace the fault plan; a scripted sequence starts from its beginning."""
        self._settings = settings
        self._sequence = deque(
            FAULT_ALIASES.get(kind, kind) for kind in settings.sequence
        )
        self._random = random.Random(settings.seed)
        self._probabilities = [
            (FAULT_ALIASES.get(kind, kind), probability)
            for kind, probability in settings.probabilities.items()
        ]

    def clear(self) -> None:
        """No faults from now on."""
        self.configure(FaultSettings())

    def next(self, endpoint: str) -> str:
        """The fault kind for the next call to *endpoint* (``"ok"`` for none)."""
        if endpoint not in self._settings.endpoints:
            return "ok"
        if self._settings.sequence:
            return self._sequence.popleft() if self._sequence else "ok"
        draw = self._random.random()
        for kind, probability in self._probabilities:
            if draw < probability:
                return kind
            draw -= probability

        return "ok"
