"""The error every export function raises for a request it cannot fulfil, and the warning for one it adjusts."""


class ExportError(ValueError):
    """An export that cannot be made as asked; the message says what to change."""


class ExportWarning(UserWarning):
    """An export setting was adjusted to what the model allows (the message says which, and the limit);
    `kzoo export` prints each one as a line on stderr."""
