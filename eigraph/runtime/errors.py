"""Errors raised while running a compiled model."""


class SimulationError(Exception):
    """A run stopped: the state became NaN or infinite. ``step`` and ``population`` say where;
    the simulator's state is the one before that step, and what was recorded so far is in
    ``records``."""

    def __init__(self, message: str, step: int | None = None, population: str | None = None, records=None):
        super().__init__(message)
        self.step, self.population, self.records = step, population, records or {}


class InputError(ValueError):
    """Inputs, weights or a saved state that do not fit the model."""
