"""The error every export function raises for a request it cannot fulfil."""


class ExportError(ValueError):
    """An export that cannot be made as asked; the message says what to change."""
