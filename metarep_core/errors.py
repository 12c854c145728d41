"""User-facing errors.

Anything a user can get wrong (a CLI flag, an uploaded file, a page control, a
checkpoint) raises :class:`MetaRepError` with a message that names the value given
and what is allowed. The CLI prints it as one line and exits 2; the app shows it on
the page. Internal bugs stay ordinary exceptions.
"""


class MetaRepError(ValueError):
    """A problem with user input, phrased for the user."""


def check_positive_int(name: str, value, *, low: int = 1, high: int | None = None) -> int:
    """Validate an integer parameter at the boundary and return it as ``int``."""
    try:
        as_int = int(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: int(float("inf"))
        raise MetaRepError(f"{name} must be an integer, got {value!r}") from None
    if as_int != value and not (isinstance(value, str) and str(as_int) == value.strip()):
        raise MetaRepError(f"{name} must be an integer, got {value!r}")
    if as_int < low or (high is not None and as_int > high):
        allowed = f">= {low}" if high is None else f"between {low} and {high}"
        raise MetaRepError(f"{name} must be {allowed}, got {value!r}")
    return as_int
