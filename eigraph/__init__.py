"""eigraph: E/I rate networks with local learning rules, from a model file to fast kernels."""

from eigraph.diagnostics import Diagnostic, ModelError, Span

__version__ = "0.1.0"

__all__ = ["Diagnostic", "ModelError", "Span", "load", "__version__"]


def load(path, strict: bool = False):
    """Read, resolve and check a model file; return the :class:`~eigraph.model.Model`.

    Raises :class:`ModelError` (its ``diagnostics`` list holds every finding) when the model has
    errors, or warnings too with ``strict=True``.
    """
    from eigraph.model.load import load_model

    return load_model(path, strict=strict)
