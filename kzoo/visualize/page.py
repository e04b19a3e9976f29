"""One self-contained HTML page of attention maps: hover a query token to see which key tokens it attends to.

`attention_page(maps, images)` returns the page as a string; `write_attention_page` writes it to a file (what
`kzoo attention --output DIR` does beside the PNGs). The reader picks a map (kind and layer), a head or "averaged over
heads", and a scale; hovering (or tabbing to) a query token colours every key token by the weight the query gives
it, shows the weight in the key's tooltip and the strongest keys in a readout line. Keys the model could not attend
to (padding, future positions under a causal mask) are hatched as masked, never drawn as zero attention. For
cross-attention the queries are the target tokens and the keys the source tokens.

Self-contained means no network at all, so the page opens from a file, an e-mail attachment or an air-gapped
machine and cannot leak what it shows: the data is inline JSON, the heatmaps (`images`, PNG bytes per map) are
`data:` URIs, the style and the script are inline, and a Content-Security-Policy forbids every other source.

Tokens are data, never markup: the JSON is escaped so that no token (`</script>`, `<b>`, `&amp;`) can end the
script element, and the script writes tokens with `textContent` only.

Size: the weights are rounded to 4 decimals, one number per cell and head plus the average over heads (masked cells
are `null`), about 7 bytes a number: 12 layers of 12 heads over 128 tokens make about 18 MB, so pick layers, heads
or a window (`AttentionMap.select`) for long inputs.
"""

import base64
import html
import json
import pathlib
import re

import numpy as np

from kzoo.visualize.attention import CROSS

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DECIMALS = 4


def attention_page(maps, images=None, title="Attention maps"):
    """The HTML document (a str) showing `maps` interactively.

    Args:
        maps: a non-empty list of `kzoo.visualize.attention.AttentionMap` with distinct `.name`s (as
            `attention_maps` returns them, optionally `.select`ed).
        images: optional `{map.name: png_bytes}`: the heatmap of each map, shown under the tokens of the chosen map.
        title: the page title (plain text; escaped).

    Returns:
        str: a complete UTF-8 HTML document that loads nothing from anywhere.

    Raises:
        ValueError: no maps, two maps with one name, non-finite allowed weights, an image for a map that is not
            there or image bytes that are not PNG.

    Example:
        >>> maps = attention_maps(backbone, inputs, tokenizer.id_to_token)
        >>> pathlib.Path("attention.html").write_text(attention_page(maps), encoding="utf-8")
    """
    maps = list(maps)
    if not maps:
        raise ValueError("attention_page needs at least one AttentionMap; got none.")
    names = [attention_map.name for attention_map in maps]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"two maps share the name {repeated[0]!r}; give the page one map per kind and layer.")
    images = _checked_images(images or {}, names)
    data = {"maps": [_map_data(attention_map) for attention_map in maps]}
    figures = "".join(_figure(attention_map, images[attention_map.name]) for attention_map in maps
                      if attention_map.name in images)
    parts = {"TITLE": html.escape(str(title)), "STYLE": _STYLE, "FIGURES": figures, "SCRIPT": _SCRIPT,
             "DATA": script_json(data)}
    # One pass, so a title or token that reads "@DATA@" stays text.
    return re.sub(r"@([A-Z]+)@", lambda match: parts[match.group(1)], _TEMPLATE)


def write_attention_page(maps, path, images=None, title="Attention maps"):
    """Writes `attention_page(maps, images, title)` to `path` (UTF-8, parent folders created); returns the path."""
    path = pathlib.Path(path)
    page = attention_page(maps, images=images, title=title)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


def script_json(value):
    """`value` as JSON that is safe inside an HTML `<script>` element.

    `<`, `>` and `&` become `\\u003c`, `\\u003e`, `\\u0026` (JSON string escapes, so `JSON.parse` returns the
    original text), so no token can close the element (`</script>`) or open a comment (`<!--`); U+2028 and U+2029
    are escaped for old JavaScript parsers. NaN and infinities raise ValueError (they are not JSON).
    """
    text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    for character, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                              ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(character, escape)
    return text


def _checked_images(images, names):
    unknown = [name for name in images if name not in names]
    if unknown:
        raise ValueError(f"an image is given for {unknown[0]!r}, which is not one of the maps: {', '.join(names)}.")
    for name, png in images.items():
        if not isinstance(png, (bytes, bytearray)) or not bytes(png).startswith(PNG_SIGNATURE):
            raise ValueError(f"the image for {name!r} is not PNG bytes (got {type(png).__name__}); pass the "
                             "bytes of a PNG file, e.g. kzoo.visualize.figures.to_png(figure).")
    return images


def _map_data(attention_map):
    """The JSON of one map: tokens, positions, padding flags and weights `(heads, queries, keys)`, null = masked."""
    allowed = attention_map.allowed
    probabilities = attention_map.probabilities
    if not np.isfinite(probabilities[:, allowed]).all():
        raise ValueError(f"{attention_map.title} has NaN or infinite attention weights in allowed cells; "
                         "the page cannot show them.")
    weights = np.round(probabilities.astype(np.float64), DECIMALS).astype(object)
    weights[:, ~allowed] = None
    # The mean over heads of the exact weights, rounded once (a mean of rounded weights could be off by 1e-4).
    averaged = np.round(attention_map.averaged().astype(np.float64), DECIMALS).astype(object)
    averaged[~allowed] = None
    return {
        "name": attention_map.name,
        "title": attention_map.title,
        "kind": attention_map.kind,
        "layer": int(attention_map.layer),
        "heads": [int(head) for head in attention_map.heads],
        "queries": [_label(token) for token in attention_map.query_tokens],
        "keys": [_label(token) for token in attention_map.key_tokens],
        "query_positions": [int(position) for position in attention_map.query_positions],
        "key_positions": [int(position) for position in attention_map.key_positions],
        # A padding query may attend to nothing; a padding key receives attention from no query.
        "query_padding": [int(padding) for padding in ~allowed.any(axis=1)],
        "key_padding": [int(padding) for padding in ~allowed.any(axis=0)],
        "cross": attention_map.kind == CROSS,
        "weights": weights.tolist(),
        "averaged": averaged.tolist(),
    }


def _label(token):
    """The visible label of a token: newlines and tabs as arrows, an empty token as the empty-set sign."""
    token = str(token)
    return token.replace("\n", "\u21b5").replace("\t", "\u21e5") if token else "\u2205"


def _figure(attention_map, png):
    source = "data:image/png;base64," + base64.b64encode(bytes(png)).decode("ascii")
    title = html.escape(attention_map.title)
    return (f'<figure class="heatmap" data-map="{html.escape(attention_map.name)}" hidden>'
            f'<img src="{source}" alt="heatmap of {title}"><figcaption>{title}</figcaption></figure>')


_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy"
      content="default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>@TITLE@</title>
<style>@STYLE@</style>
</head>
<body>
<h1>@TITLE@</h1>
<form id="controls" onsubmit="return false">
  <label>Map <select id="map"></select></label>
  <label>Head <select id="head"></select></label>
  <label>Colour scale <select id="scale">
    <option value="relative">relative: the strongest key of the row is full colour</option>
    <option value="absolute">absolute: full colour is weight 1</option>
  </select></label>
</form>
<div id="legend">
  <span><span class="swatch gradient"></span> attention weight, 0 to
    <span id="scale-top">the row's strongest key</span></span>
  <span><span class="swatch masked-swatch"></span> masked: the model could not attend here (padding or a future
    position), which is not the same as zero attention</span>
  <span><span class="swatch current-swatch"></span> the query under the pointer (self-attention: and its own
    position among the keys)</span>
</div>
<p id="readout" aria-live="polite">Hover a query token (or tab to it) to see what it attends to.</p>
<section>
  <h2 id="queries-title">Queries</h2>
  <div id="queries" class="tokens"></div>
  <h2 id="keys-title">Keys</h2>
  <div id="keys" class="tokens"></div>
</section>
<section id="figures">
  <h2>Heatmap</h2>
  @FIGURES@<p id="no-figure" class="note" hidden>No heatmap image was given for this map.</p>
</section>
<script type="application/json" id="attention-data">@DATA@</script>
<script>@SCRIPT@</script>
</body>
</html>
"""

_STYLE = """
body { font: 15px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; max-width: 80em; }
h1 { font-size: 1.4em; } h2 { font-size: 1em; margin: 1em 0 0.3em; color: #555; }
#controls { display: flex; flex-wrap: wrap; gap: 1em; margin-bottom: 0.8em; }
#legend { display: flex; flex-wrap: wrap; gap: 0.5em 1.5em; font-size: 0.85em; color: #444; }
.swatch { display: inline-block; width: 2.5em; height: 1em; vertical-align: middle; border: 1px solid #999; }
.gradient { background: linear-gradient(to right, rgba(33, 102, 172, 0), rgba(33, 102, 172, 1)); }
.masked-swatch, .token.masked {
  background-color: #f4f4f4;
  background-image: repeating-linear-gradient(45deg, #c8c8c8 0 2px, transparent 2px 6px); }
.current-swatch { outline: 2px solid #d95f02; }
#readout { min-height: 2.8em; font-size: 0.9em; background: #f8f8f8; padding: 0.3em 0.6em; }
.tokens { display: flex; flex-wrap: wrap; gap: 3px; }
.token { white-space: pre; font-family: ui-monospace, monospace; padding: 1px 4px; border: 1px solid #ccc;
  border-radius: 3px; cursor: default; }
#queries .token { cursor: pointer; }
.token.masked { color: #888; }
.token.current { outline: 2px solid #d95f02; outline-offset: 1px; }
.token.dark { color: #fff; }
.heatmap img { max-width: 100%; }
.note { color: #777; font-size: 0.9em; }
"""

# The page's behaviour. It builds the token rows of the chosen map from the JSON (textContent only) and, for the
# query under the pointer, sets on every key: data-weight (the rounded weight), a blue background whose alpha is the
# weight (absolute) or the weight over the row's largest (relative), a tooltip; masked keys get the class "masked".
_SCRIPT = """
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("attention-data").textContent);
  var mapSelect = document.getElementById("map");
  var headSelect = document.getElementById("head");
  var scaleSelect = document.getElementById("scale");
  var queryRow = document.getElementById("queries");
  var keyRow = document.getElementById("keys");
  var readout = document.getElementById("readout");
  var query = null;

  function option(select, value, text) {
    var element = document.createElement("option");
    element.value = value;
    element.textContent = text;
    select.appendChild(element);
  }

  function chosenMap() { return data.maps[Number(mapSelect.value)]; }

  function quoted(token) { return "\\u201c" + token + "\\u201d"; }

  // The weights of query q under the chosen head (or averaged over heads); null where masked.
  function weights(map, q) {
    return headSelect.value === "average" ? map.averaged[q] : map.weights[Number(headSelect.value)][q];
  }

  function token(text, className) {
    var element = document.createElement("span");
    element.className = "token " + className;
    element.textContent = text;
    return element;
  }

  function fillHeads(map) {
    var previous = headSelect.value;
    headSelect.textContent = "";
    option(headSelect, "average", "averaged over heads");
    map.heads.forEach(function (head, row) { option(headSelect, String(row), "head " + head); });
    // Keep the chosen head row where the new map has it; else (and at first) the average.
    headSelect.value = /^[0-9]+$/.test(previous) && Number(previous) < map.heads.length ? previous : "average";
  }

  function fillTokens(map) {
    queryRow.textContent = "";
    keyRow.textContent = "";
    document.getElementById("queries-title").textContent = map.cross
      ? "Queries: target tokens (hover one)" : "Queries (hover one)";
    document.getElementById("keys-title").textContent = map.cross
      ? "Keys: source tokens, coloured by the attention of the hovered query" :
        "Keys: the same tokens, coloured by the attention of the hovered query";
    map.queries.forEach(function (text, q) {
      var element = token(text, "query" + (map.query_padding[q] ? " masked" : ""));
      element.dataset.index = q;
      element.tabIndex = 0;
      element.title = "query " + map.query_positions[q] + (map.query_padding[q] ? " (padding)" : "");
      element.addEventListener("mouseenter", function () { show(q); });
      element.addEventListener("focus", function () { show(q); });
      queryRow.appendChild(element);
    });
    map.keys.forEach(function (text, k) {
      var element = token(text, "key" + (map.key_padding[k] ? " masked" : ""));
      element.dataset.index = k;
      element.title = "key " + map.key_positions[k] + (map.key_padding[k] ? ": padding (masked)" : "");
      keyRow.appendChild(element);
    });
  }

  function showFigure(map) {
    var found = false;
    Array.prototype.forEach.call(document.querySelectorAll("figure.heatmap"), function (figure) {
      figure.hidden = figure.dataset.map !== map.name;
      found = found || !figure.hidden;
    });
    document.getElementById("no-figure").hidden = found;
  }

  function maskReason(map, q, k) {
    if (map.query_padding[q]) return "the query is padding";
    if (map.key_padding[k]) return "padding";
    if (!map.cross && map.key_positions[k] > map.query_positions[q]) return "a future position";
    return "not allowed";
  }

  function show(q) {
    var map = chosenMap();
    var row = weights(map, q);
    var relative = scaleSelect.value === "relative";
    var top = 0;
    row.forEach(function (weight) { if (weight !== null && weight > top) top = weight; });
    query = q;
    Array.prototype.forEach.call(queryRow.children, function (element, i) {
      element.classList.toggle("current", i === q);
    });
    var ranked = [];
    Array.prototype.forEach.call(keyRow.children, function (element, k) {
      var weight = row[k];
      element.classList.toggle("current", !map.cross && map.key_positions[k] === map.query_positions[q]);
      if (weight === null) {
        element.classList.add("masked");
        element.classList.remove("dark");
        element.style.backgroundColor = "";
        delete element.dataset.weight;
        element.title = "key " + map.key_positions[k] + ": masked (" + maskReason(map, q, k) + ")";
        return;
      }
      var alpha = relative ? (top > 0 ? weight / top : 0) : weight;
      element.classList.remove("masked");
      element.classList.toggle("dark", alpha > 0.55);
      element.style.backgroundColor = "rgba(33, 102, 172, " + alpha.toFixed(3) + ")";
      element.dataset.weight = weight.toFixed(4);
      element.title = "key " + map.key_positions[k] + ": weight " + weight.toFixed(4);
      ranked.push([weight, k]);
    });
    ranked.sort(function (a, b) { return b[0] - a[0]; });
    var head = headSelect.options[headSelect.selectedIndex].textContent;
    var text = map.title + ", " + head + ": query " + map.query_positions[q] + " " + quoted(map.queries[q]);
    if (!ranked.length) {
      text += " attends to nothing: every key is masked (" + maskReason(map, q, 0) + ").";
    } else {
      text += " attends most to " + ranked.slice(0, 5).map(function (entry) {
        return quoted(map.keys[entry[1]]) + " " + entry[0].toFixed(4);
      }).join(", ");
      var masked = row.length - ranked.length;
      text += masked ? " (" + masked + (masked === 1 ? " key" : " keys") + " masked)." : ".";
    }
    readout.textContent = text;
    readout.dataset.query = q;
  }

  function redraw(rebuild) {
    var map = chosenMap();
    if (rebuild) {
      fillHeads(map);
      fillTokens(map);
      showFigure(map);
      if (query !== null && query >= map.queries.length) query = null;
    }
    if (query !== null) show(query);
    else readout.textContent = "Hover a query token (or tab to it) to see what it attends to.";
  }

  data.maps.forEach(function (map, i) { option(mapSelect, String(i), map.title); });
  mapSelect.addEventListener("change", function () { redraw(true); });
  headSelect.addEventListener("change", function () { redraw(false); });
  scaleSelect.addEventListener("change", function () {
    document.getElementById("scale-top").textContent =
      scaleSelect.value === "relative" ? "the row's strongest key" : "1";
    redraw(false);
  });
  redraw(true);
}());
"""
