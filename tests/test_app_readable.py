"""Issue 10, the pages' side of "figures a student can read": every chart has its
"how to read this" caption under it, no raw key (``fig.x``, ``adapt.foo``) and no
bare English core message reaches a reader of the 中文 UI, Watch adaptation shows
the support set and counts its slider as the trace counts its steps, and a click on
the Embedding page's map finds the clicked point.

The pure parts (core messages in the reader's language, selection -> point) are
tested directly; the pages in the real app under AppTest (see tests/app_harness.py).
"""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from app_harness import charts, goto, new_app, problems, set_and_run, strings

EN, ZH = strings("en"), strings("zh")
RAW_KEY = re.compile(r"^[a-z_]+(\.[a-z_0-9]+)+$")
CJK = re.compile(r"[\u4e00-\u9fff]")
MY_PAGES = ("episodes", "train", "adapt", "embedding", "theory")


# ------------------------------------------------------------ what a page shows
def chart_words(spec: str) -> list[str]:
    """The words a reader sees in a Plotly chart (its JSON spec): title, axis and
    colour-bar titles, legend entries, and the how-to-read text it carries."""
    fig = json.loads(spec)
    layout, out = fig.get("layout", {}), []

    def title(obj):
        t = (obj or {}).get("title")
        return t.get("text") if isinstance(t, dict) else t

    out.append(title(layout))
    for name, axis in layout.items():
        if re.match(r"^[xy]axis\d*$", name):
            out.append(title(axis))
    for name, axis in (layout.get("scene") or {}).items():
        if name.endswith("axis"):
            out.append(title(axis))
    for trace in fig.get("data", []):
        if layout.get("showlegend", True) and trace.get("showlegend", True) and trace.get("name"):
            out.append(trace["name"])
        out.append(title((trace.get("colorbar") or (trace.get("marker") or {}).get("colorbar"))))
    out.append((layout.get("meta") or {}).get("how_to_read"))
    return [str(w) for w in out if w]


def shown(at) -> dict[str, list[str]]:
    """Everything readable on the page (main area and sidebar), by kind."""
    out: dict[str, list[str]] = {}
    for kind in ("title", "header", "subheader", "caption", "markdown", "info", "warning",
                 "error", "success"):
        out[kind] = [str(e.value) for e in getattr(at, kind)]
    labels, helps, options = [], [], []
    for kind in ("slider", "select_slider", "radio", "button", "selectbox", "multiselect",
                 "number_input", "toggle", "metric", "expander", "tabs"):
        for e in at.get(kind):
            labels.append(str(getattr(e, "label", None) or getattr(e.proto, "label", "")))
            if getattr(e, "help", None):
                helps.append(str(e.help))
            options += [str(o) for o in getattr(e, "options", None) or []]
    out["label"], out["help"], out["option"] = labels, helps, options
    out["image_caption"] = [img.caption for e in at.get("imgs") for img in e.proto.imgs
                            if img.caption]
    out["chart"] = [w for spec in charts(at).values() for w in chart_words(spec)]
    return out


def assert_readable(at, where: str, lang: str = "zh") -> None:
    """No raw key anywhere; every label and caption says something; in 中文 every
    title, caption, alert and chart caption says it in Chinese."""
    assert problems(at) == [], (where, problems(at))
    seen = shown(at)
    for kind, texts in seen.items():
        for text in texts:
            assert not RAW_KEY.match(text.strip()), f"{where}: raw key {text!r} shown as a {kind}"
            if kind in ("label", "caption"):
                assert text.strip(), f"{where}: an empty {kind}"
    if lang == "zh":
        for kind in ("title", "subheader", "caption", "info", "warning", "error", "success"):
            for text in seen[kind]:
                assert CJK.search(text), f"{where}: English-only {kind} in 中文: {text!r}"


def captions_under_charts(at) -> None:
    """Every chart's how-to-read text is in a caption on the page."""
    captions = {str(c.value) for c in at.caption}
    for key, spec in charts(at).items():
        how = (json.loads(spec)["layout"].get("meta") or {}).get("how_to_read")
        assert how, f"chart {key} carries no how-to-read text"
        assert how in captions, f"chart {key}'s how-to-read is not shown under it"


@pytest.fixture(scope="module")
def zh_app():
    return new_app(lang="zh", k_shot=2, n_query=2)


def test_each_of_these_pages_in_chinese_shows_no_raw_key_and_explains_its_charts(zh_app):
    at = zh_app
    set_and_run(at, dataset="glyphs", algorithm="protonet", k_shot=2, n_query=2)
    for page in MY_PAGES:
        goto(at, page)
        assert_readable(at, page)
        captions_under_charts(at)
    goto(at, "adapt")
    assert {"adapt_support", "adapt_curves", "adapt_predictions", "adapt_motion"} <= set(charts(at))


def test_watching_every_learner_in_chinese_shows_no_raw_key(zh_app):
    """Each learner's last step: its family-specific figures (the trace extras) and
    its step label, in Chinese, each chart explained."""
    from metarep_core.learners import available, get_learner_class
    at = zh_app
    goto(at, "adapt")
    set_and_run(at, dataset="glyphs", k_shot=1, n_query=1)
    for name in available():
        if "classification" not in get_learner_class(name).tasks:
            continue
        set_and_run(at, algorithm=name)
        if at.slider:
            slider = at.slider(key="adapt_step")
            slider.set_value(slider.max).run()
        assert_readable(at, f"adapt/{name}")
        captions_under_charts(at)
        step_line = next(m.value for m in at.markdown if m.value.startswith(f"**{ZH['adapt.step']}"))
        assert CJK.search(step_line.split("—", 1)[1]), f"{name}: step label not translated: {step_line}"


def test_the_sinusoid_pages_in_chinese_show_no_raw_key():
    at = new_app(lang="zh", dataset="sinusoid", algorithm="maml", k_shot=5, n_query=5)
    for page in ("episodes", "adapt", "embedding"):
        goto(at, page)
        assert_readable(at, f"sinusoid/{page}")
    goto(at, "adapt")
    assert {"adapt_regression_0", "adapt_regression_1"} <= set(charts(at))
    how = json.loads(charts(at)["adapt_regression_0"])["layout"]["meta"]["how_to_read"]
    assert [c.value for c in at.caption].count(how) == 1  # one caption under the pair


def test_an_impossible_episode_is_explained_in_chinese():
    at = new_app(lang="zh")
    for page in ("episodes", "adapt", "embedding"):
        goto(at, page)
        set_and_run(at, k_shot=15, n_query=10)
        assert problems(at) == [] and at.error, page
        for e in at.error:
            assert CJK.search(e.value) and "25" in e.value, (page, e.value)
            assert "but class" not in e.value, e.value
        assert_readable(at, f"error/{page}")
        set_and_run(at, dataset="glyphs", n_way=5, k_shot=1, n_query=5)


def test_a_split_with_fewer_classes_than_n_is_noted_in_chinese():
    """digits' test split has 3 classes: N is fitted with a note (no error), in 中文."""
    at = new_app(lang="zh", dataset="digits", n_way=5)
    for page in ("episodes", "adapt", "embedding"):
        goto(at, page)
        assert not at.error, (page, [e.value for e in at.error])
        assert_readable(at, f"digits/{page}")


def test_a_clamped_projection_is_noted_in_chinese():
    # 5-way 1-shot, 1 query, no extra samples: 15 points, a perplexity of 100 is lowered
    at = new_app(lang="zh", n_query=1)
    goto(at, "embedding")
    set_and_run(at, emb_method="tsne", emb_perplexity=100, emb_samples=0)
    notes = [c.value for c in at.caption if "100" in c.value]
    assert notes and all(CJK.search(n) for n in notes), [c.value for c in at.caption]
    assert_readable(at, "embedding/tsne")


# ------------------------------------------------------------------ the slider
def values(array) -> list:
    """A chart spec's array as a list (Plotly writes numpy arrays as typed base64)."""
    if isinstance(array, dict) and "bdata" in array:
        import base64
        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"]).tolist()
    return list(array)


def test_the_adaptation_slider_counts_the_steps_as_the_trace_does():
    """ProtoNet's steps are shots (1, 2, 3): the slider runs over the same numbers as
    the curves' x axis, and its line names the step in the session's language."""
    at = new_app(lang="zh", algorithm="protonet", k_shot=3, n_query=2)
    goto(at, "adapt")
    slider = at.slider(key="adapt_step")
    curve_x = values(json.loads(charts(at)["adapt_curves"])["data"][0]["x"])
    assert (slider.min, slider.max, slider.value) == (1, 3, 1)
    assert curve_x == [1]  # drawn up to the chosen step, which is step 1
    line = next(m.value for m in at.markdown if m.value.startswith(f"**{ZH['adapt.step']} 1/3**"))
    assert ZH["step.shots"].format(k=1) in line and "shot" not in line
    # the motion plot's path starts where the trace does
    assert ZH["adapt.path_since"].format(step=1) in chart_words(charts(at)["adapt_motion"])
    slider.set_value(3).run()
    assert values(json.loads(charts(at)["adapt_curves"])["data"][0]["x"]) == [1, 2, 3]
    # another learner's trace starts at 0: the slider does too
    set_and_run(at, algorithm="anil")
    slider = at.slider(key="adapt_step")
    assert slider.min == 0 and slider.max >= 3 and slider.min <= slider.value <= slider.max
    set_and_run(at, algorithm="protonet")
    slider = at.slider(key="adapt_step")
    assert (slider.min, slider.max) == (1, 3) and slider.value in (1, 2, 3)
    slider.set_value(3).run()
    # at the end, play restarts from the first step (1) and moves on at once to the next
    at.button(key="adapt_play").click().run()
    assert at.slider(key="adapt_step").value == 2 and at.session_state["_adapt_playing"]
    at.button(key="adapt_play").click().run()


def test_watch_adaptation_shows_the_support_set_above_the_trace():
    at = new_app(algorithm="protonet", n_way=4, k_shot=2, n_query=1)
    goto(at, "adapt")
    keys = list(charts(at))
    assert keys.index("adapt_support") < keys.index("adapt_curves")
    spec = json.loads(charts(at)["adapt_support"])
    assert spec["layout"]["meta"]["figure"] == "support_grid"
    hover = next(tr for tr in spec["data"] if tr.get("name") == "hover")
    assert len(values(hover["customdata"])) == 4 * 2  # every support example, no query
    assert spec["layout"]["height"] <= 460


def test_the_motion_plot_rings_the_queries_wrong_at_the_shown_step():
    """The ring count is the number of queries the trace's probabilities get wrong
    (4-way: no shipped checkpoint, a fresh model gets some wrong)."""
    from app import services
    from metarep_core.data import load_dataset
    at = new_app(dataset="glyphs", algorithm="protonet", n_way=4, k_shot=1, n_query=4, seed=2)
    goto(at, "adapt")
    settings = at.session_state["_ctx"].settings
    episode = services.sample_episode(settings, load_dataset("glyphs"))
    model = next(m for k, m in at.session_state["models"].items() if k[0] == "protonet")
    step = services.adapt(model.learner, episode).trace[0]
    n_wrong = int((np.asarray(step.query_probs).argmax(1) != episode.query_y.numpy()).sum())
    assert n_wrong > 0
    spec = json.loads(charts(at)["adapt_motion"])
    rings = [tr for tr in spec["data"] if tr.get("name") == EN["fig.wrong"]]
    assert (len(values(rings[0]["x"])) if rings else 0) == n_wrong
    assert spec["layout"]["legend"]["y"] < 0  # the key sits under the plot, not under the title


# -------------------------------------------------- core messages, in Chinese
def core_messages() -> dict[str, str]:
    """Real messages of the core, one per form a page (or the sidebar's upload box) can show."""
    import io
    import zipfile

    from metarep_core.data import load_dataset, load_image_archive
    from metarep_core.errors import MetaRepError, check_positive_int
    from metarep_core.learners import get_learner_class
    from metarep_core.projection import resolve_params
    out = {}

    def caught(name, fn):
        with pytest.raises(MetaRepError) as err:
            fn()
        out[name] = str(err.value)

    digits, glyphs = load_dataset("digits"), load_dataset("glyphs")
    caught("n_way", lambda: digits.check_episode("test", 5, 1, 5))
    caught("images", lambda: glyphs.check_episode("test", 5, 15, 10))
    caught("regression", lambda: load_dataset("sinusoid").check_episode("test", 3, 5, 5))
    caught("integer", lambda: check_positive_int("seed", "x"))
    caught("range", lambda: check_positive_int("n_way", 500, high=20))
    caught("low", lambda: check_positive_int("k_shot", 0))
    hp = next(h for h in get_learner_class("maml").all_hyperparams() if h.name == "inner_lr")
    caught("hp_range", lambda: hp.validate(1e9))
    caught("choice", lambda: resolve_params(30, "isomap"))
    empty = io.BytesIO()
    with zipfile.ZipFile(empty, "w") as zf:
        zf.writestr("shapes/a/readme.txt", "no image here")
    caught("not_zip", lambda: load_image_archive(b"not a zip", name="x.zip"))
    caught("no_images", lambda: load_image_archive(empty.getvalue(), name="x.zip"))
    out["too_few"] = resolve_params(5, "umap")[1][0]
    out["neighbors"] = resolve_params(10, "umap", n_neighbors=50)[1][0]
    out["perplexity"] = resolve_params(10, "tsne", perplexity=50)[1][0]
    return out


def test_every_core_message_a_page_shows_reads_in_chinese():
    from app.messages import user_message
    for name, text in core_messages().items():
        zh = user_message(text, lang="zh")
        assert user_message(text, lang="en") == text, name  # English: the core's own words
        assert zh != text and CJK.search(zh), (name, text, zh)
        assert ZH["msg.untranslated"].split("{")[0] not in zh, f"{name} has no pattern: {text}"
        assert "{" not in zh, (name, zh)  # every placeholder filled
        for number in re.findall(r"\d+", text):  # the values the message names survive
            assert number in zh, (name, number, zh)


def test_an_unknown_message_is_shown_under_a_translated_heading_and_ours_as_is():
    from app.messages import user_message
    text = "something new went wrong with value 7"
    assert user_message(text, lang="zh") == ZH["msg.untranslated"].format(message=text)
    assert user_message(ZH["upload.none_yet"], lang="zh") == ZH["upload.none_yet"]
    assert user_message("", lang="zh") == ""


def test_every_message_pattern_has_a_template_in_both_languages():
    import string
    from app.messages import PATTERNS
    fmt = string.Formatter()
    for pattern, key in PATTERNS:
        for table in (EN, ZH):
            assert key in table, key
            placeholders = {f for _, f, _, _ in fmt.parse(table[key]) if f}
            assert placeholders <= set(pattern.groupindex), (key, placeholders)


# ------------------------------------------------------- embedding: a click
def embedding_points():
    """A small real EmbeddingPoints: 2 classes x (1 support, 2 queries), 1 sample, 2 prototypes."""
    from app.embedding_space import EmbeddingPoints
    rng = np.random.default_rng(0)
    kinds = np.array(["support", "support", "query", "query", "query", "query", "sample",
                      "prototype", "prototype"])
    names = ["a", "b", "a", "a", "b", "b", "a", "a", "b"]
    wrong = np.array([0, 0, 0, 1, 0, 0, 0, 0, 0], bool)
    images = rng.random((9, 6, 6))
    images[7:] = 0
    return EmbeddingPoints(rng.normal(size=(9, 2)), names, [None] * 9, kinds, wrong, images, [])


def click_event(fig, trace_name: str, j: int) -> dict:
    """The selection Streamlit returns for a click on point ``j`` of the trace named
    ``trace_name`` (the shape of ``st.plotly_chart(..., on_select="rerun")``'s event)."""
    k, trace = next((k, tr) for k, tr in enumerate(fig.data) if tr.name == trace_name)
    point = {"curve_number": k, "point_number": j, "point_index": j, "x": float(trace.x[j]),
             "y": float(trace.y[j]), "customdata": int(trace.customdata[j])}
    return {"selection": {"points": [point], "point_indices": [j], "box": [], "lasso": []}}


def test_a_click_on_the_embedding_map_finds_the_point_its_image_and_what_it_is():
    from app.figures.embedding import embedding_figure
    from app.clicks import clicked_points
    pts = embedding_points()
    fig = embedding_figure(pts.xy, pts.y, class_names=pts.class_names, kinds=pts.kinds,
                           wrong=pts.wrong, images=pts.images, lang="en")
    # the second query drawn is point 3, the misclassified one
    info, = clicked_points(pts, click_event(fig, EN["fig.query"], 1))
    assert (info.index, info.kind, info.class_name, info.wrong) == (3, "query", "a", True)
    np.testing.assert_array_equal(info.images, pts.images[3:4])
    # the red ring is a trace of its own: a click on it finds the same point
    assert clicked_points(pts, click_event(fig, EN["fig.wrong"], 0))[0].index == 3
    info, = clicked_points(pts, click_event(fig, EN["fig.sample"], 0))
    assert (info.index, info.kind, info.wrong) == (6, "sample", False)
    # a prototype has no image: its class's support images stand for it
    info, = clicked_points(pts, click_event(fig, EN["fig.prototype"], 1))
    assert (info.index, info.kind, info.class_name) == (8, "prototype", "b")
    np.testing.assert_array_equal(info.images, pts.images[1:2])


def test_no_click_or_a_stale_one_finds_nothing():
    from app.clicks import clicked_points
    pts = embedding_points()
    assert clicked_points(pts, None) == []
    assert clicked_points(pts, {"selection": {"points": [], "point_indices": []}}) == []
    stale = {"selection": {"points": [{"customdata": 40}, {"customdata": 2}]}}
    assert [i.index for i in clicked_points(pts, stale)] == [2]
    many = {"selection": {"points": [{"customdata": i} for i in range(9)]}}
    assert len(clicked_points(pts, many, limit=4)) == 4
