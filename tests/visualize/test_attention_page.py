"""The attention page: self-contained HTML (unit checks on the text) that a real headless Chromium can use.

The browser tests open the page from a file:// URL in Debian's Chromium through its chromedriver (never a driver
that Selenium Manager downloads), hover query tokens and read back what every key token shows: its `data-weight`
(the rounded weight), its computed background colour (alpha = weight over the row's largest, or the weight on the
absolute scale) and whether it is styled as masked. They skip, saying why, only where Chromium, chromedriver or
selenium is missing (`tools/install_browser.sh`, run by `tools/test.sh`, installs the first two as root).

Maps: a hand-made one whose heads differ clearly (so a head switch must change the view) with causal masking, a
padding position and hostile tokens; the real maps of a tiny GPT (causal + padding) and a tiny T5's cross-attention.
"""

import base64
import json
import re
import shutil

import numpy as np
import pytest

from kzoo import models
from kzoo.visualize import attention, figures
from kzoo.visualize.page import attention_page, write_attention_page

WEIGHT_TOLERANCE = 5e-5 + 1e-7  # the page rounds weights to 4 decimals
ALPHA_TOLERANCE = 0.01  # the browser may store a colour's alpha with 8 bits
HOSTILE = ["</script><script>window.pwned=1</script>", "<b>bold</b>", '<img src=x onerror="window.pwned=1">',
           "&amp; \"'", "<!--\u2028", "[PAD]"]
TITLE = "Attention of <i>tiny</i> & co"


def _hand_map():
    """3 heads (original indices 0, 2, 5), 6 tokens, causal, the last one padding; peaked, different heads."""
    rng = np.random.default_rng(0)
    allowed = np.tril(np.ones((6, 6), bool))
    allowed[5, :] = allowed[:, 5] = False
    logits = np.where(allowed, rng.normal(size=(3, 6, 6)) * 3.0, -1e9)
    probabilities = np.exp(logits - logits.max(axis=-1, keepdims=True))
    probabilities /= probabilities.sum(axis=-1, keepdims=True)
    probabilities[:, 5, :] = 1 / 6  # what a model computes for a padding query: meaningless, masked on the page
    return attention.AttentionMap(attention.SELF, 4, probabilities, HOSTILE, HOSTILE, allowed, heads=[0, 2, 5])


@pytest.fixture(scope="module")
def hand_map():
    return _hand_map()


@pytest.fixture(scope="module")
def gpt_maps():
    backbone = models.from_preset("gpt_test", dropout=0.0)
    inputs = {"token_ids": np.array([5, 6, 7, 8, 9, 0, 0], "int32"),
              "padding_mask": np.array([1, 1, 1, 1, 1, 0, 0], "int32")}
    return attention.attention_maps(backbone, inputs, lambda i: f"t{i}")


@pytest.fixture(scope="module")
def cross_map():
    backbone = models.from_preset("t5_test", dropout=0.0)
    inputs = {"encoder_token_ids": np.array([11, 12, 13, 14, 0], "int32"),
              "encoder_padding_mask": np.array([1, 1, 1, 1, 0], "int32"),
              "decoder_token_ids": np.array([21, 22, 23, 0], "int32"),
              "decoder_padding_mask": np.array([1, 1, 1, 0], "int32")}
    maps = attention.attention_maps(backbone, inputs, lambda i: f"s{i}" if i < 20 else f"t{i}")
    return next(m for m in maps if m.kind == attention.CROSS and m.layer == 0)


@pytest.fixture(scope="module")
def png():
    figure = figures.new_figure(1, 1, dpi=20)
    figure.add_subplot().imshow(np.eye(3))
    return figures.to_png(figure)


def _page_data(page):
    match = re.search(r'<script type="application/json" id="attention-data">(.*?)</script>', page, re.S)
    assert match, "the page has no inline attention data"
    return json.loads(match.group(1))


# ---- the HTML text


def test_page_is_self_contained(hand_map, gpt_maps, png):
    page = attention_page([hand_map, *gpt_maps], images={gpt_maps[0].name: png}, title=TITLE)
    assert page.startswith("<!DOCTYPE html>")
    assert "http://" not in page and "https://" not in page and "url(" not in page
    assert "<link" not in page and "<iframe" not in page and not re.search(r"<script[^>]*\ssrc", page)
    markup = page.replace(re.search(r'id="attention-data">(.*?)</script>', page, re.S).group(1), "")  # data aside
    sources = re.findall(r"""\b(?:src|href)\s*=\s*["']?([^"'\s>]*)""", markup)
    assert sources and all(source.startswith("data:image/png;base64,") for source in sources), sources
    assert "default-src 'none'" in page  # the Content-Security-Policy that forbids any other source


def test_page_holds_every_map_rounded(hand_map, gpt_maps, cross_map):
    maps = [hand_map, *gpt_maps, cross_map]
    data = _page_data(attention_page(maps))
    assert [entry["name"] for entry in data["maps"]] == [m.name for m in maps]
    for entry, attention_map in zip(data["maps"], maps, strict=True):
        assert entry["title"] == attention_map.title and entry["heads"] == attention_map.heads
        assert entry["queries"] == attention_map.query_tokens and entry["keys"] == attention_map.key_tokens
        for key, expected in (("weights", attention_map.probabilities), ("averaged", attention_map.averaged())):
            weights = np.array(entry[key], dtype=object)
            assert weights.shape == expected.shape
            masked = np.equal(weights, None)
            assert (masked == ~np.broadcast_to(attention_map.allowed, expected.shape)).all()
            allowed_weights = weights[~masked].astype(np.float64)
            np.testing.assert_allclose(allowed_weights, expected[~masked], rtol=0, atol=WEIGHT_TOLERANCE)
            assert all(len(repr(w)) <= 6 for w in allowed_weights.tolist())  # 4 decimals: "0.1234"
    cross = data["maps"][-1]
    assert cross["cross"] and cross["queries"][0].startswith("t") and cross["keys"][0].startswith("s")
    assert cross["key_padding"] == [0, 0, 0, 0, 1] and cross["query_padding"] == [0, 0, 0, 1]


def test_hostile_tokens_and_title_are_escaped(hand_map):
    page = attention_page([hand_map], title=TITLE)
    assert page.count("</script") == 2  # only the ends of the page's own two script elements
    assert page.count("<script") == 2 and "<!--" not in page
    assert "<b>" not in page and "<img" not in page and "<i>" not in page
    assert "<title>Attention of &lt;i&gt;tiny&lt;/i&gt; &amp; co</title>" in page
    assert _page_data(page)["maps"][0]["queries"] == HOSTILE
    placeholders = attention_page([hand_map], title="@DATA@ @SCRIPT@")
    assert "<title>@DATA@ @SCRIPT@</title>" in placeholders and placeholders.count("</script") == 2


def test_token_labels_show_invisible_tokens():
    allowed = np.ones((3, 3), bool)
    page = attention_page([attention.AttentionMap(attention.SELF, 0, np.full((1, 3, 3), 1 / 3), ["", "\n", "a\tb"],
                                                  ["", "\n", "a\tb"], allowed)])
    assert _page_data(page)["maps"][0]["keys"] == ["\u2205", "\u21b5", "a\u21e5b"]


def test_images_are_inline_and_checked(hand_map, png):
    page = attention_page([hand_map], images={hand_map.name: png})
    encoded = re.search(r'src="data:image/png;base64,([^"]+)"', page).group(1)
    assert base64.b64decode(encoded) == png
    with pytest.raises(ValueError, match="not one of the maps: self_attention_layer_4"):
        attention_page([hand_map], images={"cross_attention_layer_9": png})
    with pytest.raises(ValueError, match="not PNG bytes"):
        attention_page([hand_map], images={hand_map.name: b"GIF89a"})


def test_bad_maps_are_refused(hand_map):
    with pytest.raises(ValueError, match="at least one"):
        attention_page([])
    with pytest.raises(ValueError, match="share the name 'self_attention_layer_4'"):
        attention_page([hand_map, hand_map])
    broken = hand_map.select()
    broken.probabilities[1, 2, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        attention_page([broken])
    broken.probabilities[1, 2, 0] = 0.5
    broken.probabilities[1, 5, 0] = np.nan  # a masked cell: not shown, so not an error
    attention_page([broken])


def test_write_attention_page_makes_folders(tmp_path, hand_map):
    path = write_attention_page([hand_map], tmp_path / "run" / "attention.html", title=TITLE)
    assert path.read_text(encoding="utf-8") == attention_page([hand_map], title=TITLE)


# ---- in a real headless Chromium


def _chrome_paths():
    """(browser, driver) of the system Chromium, or a pytest skip saying what is missing."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        pytest.skip("selenium is not installed (pip install -e '.[test]')")
    browser = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    driver = shutil.which("chromedriver")
    if not browser or not driver:
        pytest.skip("Chromium or chromedriver is not on PATH; tools/install_browser.sh installs Debian's chromium "
                    "and chromium-driver (as root with apt-get)")
    return browser, driver


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for the module, driven by the system chromedriver (Selenium Manager is never run)."""
    browser_path, driver_path = _chrome_paths()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser_path
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1200,900"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def page_url(tmp_path_factory, hand_map, gpt_maps, cross_map, png):
    maps = [hand_map, *gpt_maps, cross_map]
    path = tmp_path_factory.mktemp("page") / "attention.html"
    write_attention_page(maps, path, images={hand_map.name: png, gpt_maps[1].name: png}, title=TITLE)
    return path.as_uri()


@pytest.fixture
def page(browser, page_url):
    """The page freshly loaded (no query hovered yet)."""
    browser.get(page_url)
    return browser


def _choose(driver, select_id, text):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element(By.ID, select_id)).select_by_visible_text(text)


def _hover(driver, query):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    token = driver.find_elements(By.CSS_SELECTOR, "#queries .token")[query]
    ActionChains(driver).move_to_element(token).perform()


def _keys(driver):
    """What each key token shows: its text, data-weight (None when absent), masked class, computed background."""
    return driver.execute_script("""
        return Array.from(document.querySelectorAll('#keys .token')).map(function (e) {
            var style = getComputedStyle(e);
            return {text: e.textContent, weight: e.dataset.weight === undefined ? null : Number(e.dataset.weight),
                    masked: e.classList.contains('masked'), color: style.backgroundColor,
                    image: style.backgroundImage};
        });""")


def _alpha(color):
    match = re.fullmatch(r"rgba?\((\d+), (\d+), (\d+)(?:, ([\d.]+))?\)", color)
    assert match, color
    return float(match.group(4) or 1.0)


def _check_row(keys, weights, allowed, scale="relative"):
    """The key tokens show `weights` (one query's row) where allowed and the masked style elsewhere."""
    assert len(keys) == len(weights)
    top = max(w for w, ok in zip(weights, allowed, strict=True) if ok) if allowed.any() else 0
    for key, weight, ok in zip(keys, weights, allowed, strict=True):
        if not ok:
            assert key["masked"] and key["weight"] is None, key
            assert "repeating-linear-gradient" in key["image"], key  # hatched, not a blue of weight 0
            continue
        assert not key["masked"] and key["image"] == "none", key
        assert abs(key["weight"] - weight) <= WEIGHT_TOLERANCE, (key, weight)
        expected_alpha = weight / top if scale == "relative" else weight
        assert key["color"].startswith("rgb") and "33, 102, 172" in key["color"], key
        assert abs(_alpha(key["color"]) - expected_alpha) <= ALPHA_TOLERANCE, (key, expected_alpha)


def test_hover_colours_keys_by_weight(page, hand_map):
    _choose(page, "head", "head 0")
    assert all(key["weight"] is None for key in _keys(page))  # nothing highlighted before a hover
    _hover(page, 3)
    first = _keys(page)
    _check_row(first, hand_map.probabilities[0, 3], hand_map.allowed[3])
    _hover(page, 4)
    second = _keys(page)
    _check_row(second, hand_map.probabilities[0, 4], hand_map.allowed[4])
    assert [key["weight"] for key in first] != [key["weight"] for key in second]
    readout = page.find_element("id", "readout").text
    assert readout.startswith("self-attention, layer 4, head 0: query 4") and "(1 key masked)" in readout


def test_head_and_average_switches_change_the_view(page, hand_map):
    _hover(page, 4)  # the view starts averaged over heads
    averaged = _keys(page)
    _check_row(averaged, hand_map.averaged()[4], hand_map.allowed[4])
    _choose(page, "head", "head 5")  # the third head: original index 5
    head_5 = _keys(page)
    _check_row(head_5, hand_map.probabilities[2, 4], hand_map.allowed[4])
    _choose(page, "head", "head 2")
    head_2 = _keys(page)
    _check_row(head_2, hand_map.probabilities[1, 4], hand_map.allowed[4])
    views = [[key["weight"] or 0 for key in keys] for keys in (averaged, head_5, head_2)]
    for i in range(3):
        for j in range(i):
            assert np.abs(np.subtract(views[i], views[j])).max() > 0.05


def test_absolute_scale(page, hand_map):
    _choose(page, "scale", "absolute: full colour is weight 1")
    _choose(page, "head", "head 2")
    _hover(page, 2)
    _check_row(_keys(page), hand_map.probabilities[1, 2], hand_map.allowed[2], scale="absolute")


def test_masked_keys_keep_the_masked_style(page, hand_map):
    keys = _keys(page)
    assert [key["masked"] for key in keys] == [False] * 5 + [True]  # the padding key, before any hover
    _hover(page, 1)  # keys 2-4 are in its future, key 5 is padding
    _check_row(_keys(page), hand_map.averaged()[1], hand_map.allowed[1])
    _choose(page, "head", "head 2")
    keys = _keys(page)
    _check_row(keys, hand_map.probabilities[1, 1], hand_map.allowed[1])
    assert [key["masked"] for key in keys] == [False, False, True, True, True, True]
    _hover(page, 5)  # the padding query attends to nothing, though the model computed 1/6 everywhere
    assert all(key["masked"] and key["weight"] is None for key in _keys(page))
    assert "attends to nothing" in page.find_element("id", "readout").text


def test_real_gpt_map(page, gpt_maps):
    attention_map = gpt_maps[1]
    _choose(page, "map", attention_map.title)
    assert [key["text"] for key in _keys(page)] == attention_map.key_tokens
    _choose(page, "head", "head 1")
    for query in (0, 3, 4):
        _hover(page, query)
        _check_row(_keys(page), attention_map.probabilities[1, query], attention_map.allowed[query])
    keys = _keys(page)
    assert [key["masked"] for key in keys] == [False] * 5 + [True] * 2  # 5 real tokens, 2 padding
    assert sum(key["weight"] for key in keys if key["weight"] is not None) == pytest.approx(1, abs=5e-4)


def test_cross_attention_queries_target_keys_source(page, cross_map):
    from selenium.webdriver.common.by import By

    _choose(page, "map", cross_map.title)
    queries = [element.text for element in page.find_elements(By.CSS_SELECTOR, "#queries .token")]
    assert queries == cross_map.query_tokens and queries[0].startswith("t")
    assert [key["text"] for key in _keys(page)] == cross_map.key_tokens
    assert "source tokens" in page.find_element(By.ID, "keys-title").text
    _hover(page, 2)
    _check_row(_keys(page), cross_map.averaged()[2], cross_map.allowed[2])


def test_hostile_tokens_stay_text(page, hand_map):
    from selenium.webdriver.common.by import By

    assert page.title == TITLE
    assert page.execute_script("return window.pwned === undefined")
    assert page.execute_script("return document.querySelectorAll('#queries *:not(.token), #keys *:not(.token), "
                               "body > b, body > img').length") == 0
    texts = page.execute_script(
        "return Array.from(document.querySelectorAll('#queries .token')).map(e => e.textContent)")
    assert texts == HOSTILE
    assert len(page.find_elements(By.CSS_SELECTOR, "#queries .token")) == len(hand_map.query_tokens)


def test_heatmap_follows_the_map_and_nothing_is_fetched(page, hand_map, gpt_maps, png):
    def shown():
        return page.execute_script(
            "return Array.from(document.querySelectorAll('figure.heatmap')).filter(f => !f.hidden)"
            ".map(f => [f.dataset.map, f.querySelector('img').naturalWidth])")

    def note():
        return page.find_element("id", "no-figure").is_displayed()

    assert shown() == [[hand_map.name, figures.new_figure(1, 1, dpi=20).bbox.width]] and not note()
    _choose(page, "map", gpt_maps[0].title)
    assert shown() == [] and note()  # no image was given for this map
    _choose(page, "map", gpt_maps[1].title)
    assert [name for name, _ in shown()] == [gpt_maps[1].name] and not note()
    assert page.execute_script("return performance.getEntriesByType('resource').length") == 0
    errors = [entry for entry in page.get_log("browser") if entry["level"] == "SEVERE"]
    assert not errors, errors  # no script error, no request the Content-Security-Policy had to block
