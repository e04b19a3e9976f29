"""Matplotlib figures without pyplot: one home for making a figure and turning it into PNG bytes or pixels.

kzoo draws through `matplotlib.figure.Figure` and the Agg canvas directly, never `pyplot`: no global figure
registry to leak from a long training run, no GUI backend picked from the environment, and nothing that
depends on `MPLBACKEND` or a display.
"""

import io

import numpy as np


def new_figure(width, height, dpi=100):
    """A `Figure` of `width` x `height` inches on an Agg canvas (import matplotlib only when drawing)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(figure)
    return figure


def to_png(figure):
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def to_pixels(figure):
    """The figure as a `(height, width, 3)` uint8 RGB array (what `tf.summary.image` takes, batched)."""
    figure.canvas.draw()
    return np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()
