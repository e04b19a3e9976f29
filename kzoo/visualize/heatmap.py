"""Attention heatmaps with matplotlib: one figure per layer, one panel per head, tokens on both axes.

Rows are queries (the token that attends), columns keys (the token attended to). Cells where attention was not
allowed (padding, future positions of causal attention) are drawn in the masked colour, hatched, not as zero
attention; the colour scale is shared by the heads of a layer and runs from 0 to the layer's largest probability, so
one colour bar reads every panel. Long sequences label every n-th token (at most `max_labels` per axis); a window of
positions is `AttentionMap.select(window=...)`'s job.
"""

import math
import warnings

import numpy as np

from kzoo.visualize.figures import new_figure, to_pixels, to_png

MASKED_COLOUR = "#c8c8c8"
COLOUR_MAP = "viridis"
_CELL_INCHES = 0.16  # one token's row/column at the default size
_PANEL_INCHES = (2.2, 7.0)  # the smallest and largest side of one head's panel


def label_step(count, max_labels):
    """Label every `label_step`-th position so that at most `max_labels` of `count` are written."""
    if max_labels < 1:
        raise ValueError(f"max_labels must be at least 1, got {max_labels}.")
    return max(1, math.ceil(count / max_labels))


def layer_figure(attention_map, max_labels=40, columns=None):
    """The figure of one `AttentionMap`: a grid of head panels, titles, a colour bar and a legend.

    Args:
        attention_map: a `kzoo.visualize.attention.AttentionMap` (select heads/window first to show fewer).
        max_labels: the most tick labels per axis; longer sequences label every n-th token.
        columns: panels per row (default: a near-square grid, 2 x 2 for 4 heads, 4 x 3 for 12).

    Returns:
        A `matplotlib.figure.Figure` (Agg canvas). Its head axes are `figure.kzoo_head_axes`, in head order.
    """
    probabilities = attention_map.probabilities
    num_heads, queries, keys = probabilities.shape
    columns = columns or math.ceil(math.sqrt(num_heads))
    rows = math.ceil(num_heads / columns)
    low, high = _PANEL_INCHES
    width, height = (min(high, max(low, count * _CELL_INCHES)) for count in (keys, queries))
    label_room = 0.9  # inches for the tick labels beside and below the grid
    figure = new_figure(columns * (width + 0.35) + label_room + 1.0, rows * (height + 0.45) + label_room + 0.7)
    inch_x, inch_y = 1 / figure.get_figwidth(), 1 / figure.get_figheight()
    grid = figure.add_gridspec(rows, columns, left=label_room * inch_x, right=1 - 1.0 * inch_x,
                               bottom=label_room * inch_y, top=1 - 0.8 * inch_y,
                               wspace=0.12, hspace=0.25)
    allowed_values = probabilities[:, attention_map.allowed]
    vmax = float(allowed_values.max()) if allowed_values.size else 1.0
    colour_map = _colour_map()
    query_step, key_step = label_step(queries, max_labels), label_step(keys, max_labels)
    font_size = 7 if max(queries, keys) <= 24 else 6
    head_axes = []
    image = None
    for index, head in enumerate(attention_map.heads):
        row, column = divmod(index, columns)
        axes = figure.add_subplot(grid[row, column])
        cells = np.ma.masked_array(probabilities[index], mask=~attention_map.allowed)
        image = axes.imshow(cells, cmap=colour_map, vmin=0.0, vmax=vmax, interpolation="nearest", aspect="auto")
        _hatch_masked(axes, attention_map.allowed)
        axes.set_title(f"head {head}", fontsize=8)
        _ticks(axes.set_yticks, axes.set_yticklabels, attention_map.query_tokens, query_step, font_size,
               show=column == 0)
        _ticks(axes.set_xticks, axes.set_xticklabels, attention_map.key_tokens, key_step, font_size,
               show=row == rows - 1 or index + columns >= num_heads, rotation=90)
        if column == 0:
            axes.set_ylabel("query (attends)", fontsize=8)
        if row == rows - 1 or index + columns >= num_heads:
            axes.set_xlabel("key (attended to)", fontsize=8)
        head_axes.append(axes)
    colour_axes = figure.add_axes((1 - 0.75 * inch_x, 0.25, 0.14 * inch_x, 0.5))
    colour_bar = figure.colorbar(image, cax=colour_axes)
    colour_bar.set_label("attention probability", fontsize=8)
    colour_bar.ax.tick_params(labelsize=7)
    figure.legend(handles=[_masked_patch()], loc="upper right", fontsize=7, frameon=False)
    step_note = "" if query_step == key_step == 1 else f" (every {_ordinal(max(query_step, key_step))} token labelled)"
    suptitle = figure.suptitle(f"{attention_map.title}{step_note}", fontsize=10)
    suptitle.set_parse_math(False)
    figure.kzoo_head_axes = head_axes
    return figure


def _ordinal(number):
    suffix = "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number}{suffix}"


def layer_png(attention_map, **options):
    """`layer_figure` as PNG bytes."""
    return _rendered(attention_map, options, to_png)


def layer_pixels(attention_map, **options):
    """`layer_figure` as a uint8 `(height, width, 3)` array (a TensorBoard image)."""
    return _rendered(attention_map, options, to_pixels)


def _rendered(attention_map, options, render):
    """`render(layer_figure(...))`, the figure drawn once, inside the warnings filter."""
    with warnings.catch_warnings():  # a token whose glyph the font lacks is drawn as a box: not worth a warning
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        return render(layer_figure(attention_map, **options))


def _colour_map():
    from matplotlib import colormaps

    return colormaps[COLOUR_MAP].with_extremes(bad=MASKED_COLOUR)


def _masked_patch():
    from matplotlib.patches import Patch

    return Patch(facecolor=MASKED_COLOUR, edgecolor="#8c8c8c", hatch="///", label="masked (padding or future)")


def _hatch_masked(axes, allowed):
    """Hatches the masked cells (a second cue besides the colour, for print and colour-blind readers).

    One compound path of the masked cells, a rectangle per run of masked cells in a row, hatched as one patch: a
    causal map has one run per row, so drawing costs O(queries), where hatching each cell cost O(queries * keys)
    (a 12-head 64 x 64 layer took 19 s to draw that way).
    """
    from matplotlib.patches import PathPatch
    from matplotlib.path import Path

    vertices, codes = [], []
    for row, masked in enumerate(~allowed):
        edges = np.flatnonzero(np.diff(np.concatenate([[False], masked, [False]]).astype(np.int8)))
        for start, stop in zip(edges[::2], edges[1::2], strict=True):
            left, right, top, bottom = start - 0.5, stop - 0.5, row - 0.5, row + 0.5
            vertices += [(left, top), (right, top), (right, bottom), (left, bottom), (left, top)]
            codes += [Path.MOVETO, Path.LINETO, Path.LINETO, Path.LINETO, Path.CLOSEPOLY]
    if vertices:
        axes.add_patch(PathPatch(Path(vertices, codes), facecolor="none", edgecolor="#8c8c8c", hatch="///",
                                 linewidth=0.0))
    axes.set_xlim(-0.5, allowed.shape[1] - 0.5)
    axes.set_ylim(allowed.shape[0] - 0.5, -0.5)


def _ticks(set_ticks, set_labels, tokens, step, font_size, show, rotation=0):
    positions = list(range(0, len(tokens), step))
    set_ticks(positions)
    if not show:
        set_labels([])
        return
    for label in set_labels([tokens[i] for i in positions], fontsize=font_size, rotation=rotation):
        label.set_parse_math(False)  # a token like "$x$" is text, not mathtext
