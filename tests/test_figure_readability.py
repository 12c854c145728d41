"""Figures a student can read (issue 10): every figure function, in English and in
简体中文, has a title in words, axis titles with units (never "#", "value" or a raw
key), a legend when it draws more than one series (a colour bar for heatmaps), and a
"how to read this" text; every learner's trace extras are declared and translated;
every hyper-parameter has a label and help in both languages; every i18n key the app
uses exists in both languages, and the Chinese is not the English text.

The traces are real: each registered learner, untrained, adapts with ``record=True`` to
a small glyphs episode (and the regression-capable ones to a sinusoid task).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from app.figures import how_to_read, merge_labels, wrap_title
from app.figures.adaptation import embedding_motion, probability_bars, query_predictions
from app.figures.compare import comparison_figure
from app.figures.curves import trace_curves, training_curves
from app.figures.embedding import embedding_figure
from app.figures.episodes import episode_grid, regression_plot, support_query_figures
from app.figures.extras import EXTRAS, SKIP_EXTRAS, trace_extras
from metarep_core.data import load_dataset
from metarep_core.episodes import EpisodeSampler
from metarep_core.learners import available, build_learner, get_learner_class

ROOT = Path(__file__).resolve().parent.parent
EN = json.loads((ROOT / "app/i18n/en.json").read_text(encoding="utf-8"))
ZH = json.loads((ROOT / "app/i18n/zh.json").read_text(encoding="utf-8"))
LANGS = ("en", "zh")
CJK = re.compile(r"[\u4e00-\u9fff]")
IDENTIFIER = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)+$")   # snake_case: a key, not words
N_WAY, K_SHOT, N_QUERY = 3, 2, 2
# The same text in both languages is right only for names and symbols.
SAME_IN_BOTH = {"embedding.method.umap", "embedding.method.tsne", "embedding.method.pca", "fig.index"}


# ------------------------------------------------------------------ real inputs
@pytest.fixture(scope="module")
def glyph_episode():
    return next(iter(EpisodeSampler(load_dataset("glyphs"), "test", N_WAY, K_SHOT, N_QUERY, seed=0)))


@pytest.fixture(scope="module")
def traces(glyph_episode):
    """{algorithm: trace} of every registered learner, untrained, on the glyphs episode;
    and {algorithm: trace} of the regression-capable ones on a sinusoid task."""
    glyphs, sine = load_dataset("glyphs"), load_dataset("sinusoid")
    sine_episode = next(iter(EpisodeSampler(sine, "test", 1, 5, 5, seed=0)))
    out, regression = {}, {}
    for name in available():
        cls = get_learner_class(name)
        torch.manual_seed(0)
        if "classification" in cls.tasks:
            learner = build_learner(name, glyphs.input_shape, N_WAY).eval()
            out[name] = learner.adapt(glyph_episode, record=True).trace
        if "regression" in cls.tasks:
            learner = build_learner(name, sine.input_shape, 1, task="regression").eval()
            regression[name] = learner.adapt(sine_episode, record=True).trace
    return out, regression


def all_extras_keys(traces) -> set[str]:
    classification, regression = traces
    return {k for tr in [*classification.values(), *regression.values()] for s in tr for k in s.extras}


def figures(lang: str, episode, traces) -> list[tuple[str, object]]:
    """(name, figure) of every figure function on representative inputs, in ``lang``."""
    classification, regression = traces
    x, y = episode.query_x.numpy(), episode.query_y.numpy()
    names = list(episode.class_names)
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(N_WAY), len(y))
    support, query = support_query_figures(episode, lang=lang)
    grid = np.linspace(-5, 5, 50)
    model_curve = (EN if lang == "en" else ZH)["adapt.model_curve"].format(step=1)   # as the page names it
    history = [{"step": s, "loss": 2.0 - s / 100, "accuracy": 20 + s / 2} for s in range(1, 60)]
    val = [{"step": s, "val_loss": 1.9 - s / 100, "val_accuracy": 25 + s / 2, "val_ci95": 3.0} for s in (10, 50)]
    reg_history = [{"step": s, "loss": 1.0 / s, "mse": 1.0 / s} for s in range(1, 60)]
    reg_val = [{"step": 10, "val_loss": 0.3, "val_mse": 0.3, "val_ci95": 0.05}]
    n_pts = len(y) + N_WAY * K_SHOT + N_WAY
    kinds = ["query"] * len(y) + ["support"] * (N_WAY * K_SHOT) + ["prototype"] * N_WAY
    labels_y = np.concatenate([y, episode.support_y.numpy(), np.arange(N_WAY)])
    images = np.concatenate([x, episode.support_x.numpy(), np.zeros((N_WAY, *x.shape[1:]), np.float32)])
    wrong = np.zeros(n_pts, bool)
    wrong[0] = True
    out = [
        ("episode_grid", episode_grid(x, y, names, lang=lang)),
        ("support_grid", support), ("query_grid", query),
        ("query_predictions", query_predictions(x, y, probs, names, lang=lang)),
        ("regression_plot", regression_plot(grid, np.sin(grid), [0.0, 1.0], [0.0, 0.8], {model_curve: (grid, grid)},
                                            query_x=[2.0], query_y=[0.9], lang=lang)),
        ("training_curves", training_curves(history, val, lang=lang)),
        ("training_curves_regression", training_curves(reg_history, reg_val, regression=True, lang=lang)),
        ("probability_bars", probability_bars(probs[0], names, true_class=int(y[0]), lang=lang)),
        ("embedding_2d", embedding_figure(rng.normal(size=(n_pts, 2)), labels_y, class_names=names, kinds=kinds,
                                          wrong=wrong, images=images, lang=lang)),
        ("embedding_3d", embedding_figure(rng.normal(size=(n_pts, 3)), labels_y, class_names=names, kinds=kinds,
                                          wrong=wrong, lang=lang)),
        ("embedding_motion", embedding_motion(rng.normal(size=(4, len(y) + N_WAY, 2)).cumsum(0),
                                              np.concatenate([y, np.arange(N_WAY)]), upto=2,
                                              kinds=["query"] * len(y) + ["prototype"] * N_WAY,
                                              class_names=names, wrong=np.r_[True, np.zeros(len(y) + N_WAY - 1, bool)],
                                              lang=lang)),
        ("comparison_accuracy", comparison_figure({"maml": {"accuracy": 48.04321, "ci95": 1.5111},
                                                   "protonet": {"accuracy": 61.0, "ci95": 1.2}},
                                                  chance=100 / N_WAY, lang=lang)),
        ("comparison_mse", comparison_figure({"maml": {"mse": 0.123456, "ci95": 0.0213},
                                              "reptile": {"mse": 0.5, "ci95": 0.1}}, metric="mse", lang=lang)),
    ]
    for algo, trace in sorted(classification.items()):
        out.append((f"trace_curves[{algo}]", trace_curves(trace, len(trace) - 1, lang=lang)))
        for i in sorted({0, len(trace) // 2, len(trace) - 1}):
            for fig in trace_extras(trace[i], n_query=len(y), lang=lang):
                out.append((f"extras[{algo}, step {trace[i].step}, {fig.layout.meta['extra']}]", fig))
    for algo, trace in sorted(regression.items()):
        out.append((f"trace_curves_regression[{algo}]", trace_curves(trace, len(trace) - 1, lang=lang)))
        for fig in trace_extras(trace[-1], n_query=5, lang=lang):
            out.append((f"extras_regression[{algo}, {fig.layout.meta['extra']}]", fig))
    return out


# ------------------------------------------------------------------ what "readable" means
def raw_keys(traces) -> set[str]:
    """Words a user must never read: extras keys, hyper-parameter names, internal trace names."""
    hps = {hp.name for n in available() for hp in get_learner_class(n).all_hyperparams()}
    return all_extras_keys(traces) | set(EXTRAS) | hps | {"paths", "hover", "captions", "images", "value", "#"}


def assert_words(text, what: str, lang: str, raw: set[str]) -> None:
    text = str(text or "").replace("<br>", " ").strip()
    assert text, f"{what}: empty"
    assert text not in raw and not IDENTIFIER.match(text), f"{what}: a raw key {text!r}"
    assert re.search(r"[A-Za-z\u4e00-\u9fff]", text), f"{what}: not words: {text!r}"
    if lang == "zh":
        assert CJK.search(text), f"{what}: not translated: {text!r}"


def cartesian_axes(fig) -> list[tuple[str, object]]:
    """(name, axis) of every visible x/y axis a trace draws on."""
    used = set()
    for t in fig.data:
        if t.type in ("scatter3d", "pie"):
            continue
        used.add("xaxis" + (t.xaxis or "x")[1:])
        used.add("yaxis" + (t.yaxis or "y")[1:])
    out = []
    for name in sorted(used):
        axis = fig.layout[name]
        if axis.visible is False:
            continue
        out.append((name, axis))
    return out


def series(fig) -> dict[str, list]:
    """The series a reader must tell apart: traces grouped by legend group (or name),
    leaving out decorations (hidden from the legend and from hover, or invisible
    hover targets) and images/heatmaps (which have no series)."""
    groups: dict[str, list] = {}
    for t in fig.data:
        if t.type in ("image", "heatmap"):
            continue
        decoration = t.showlegend is False and (t.hoverinfo == "skip" or (
            getattr(t, "marker", None) is not None and t.marker.opacity == 0))
        if not decoration:
            groups.setdefault(t.legendgroup or t.name or "", []).append(t)
    return groups


@pytest.mark.parametrize("lang", LANGS)
def test_every_figure_has_a_title_axis_titles_a_key_and_a_how_to_read_text(lang, glyph_episode, traces):
    raw = raw_keys(traces)
    english = dict(figures("en", glyph_episode, traces)) if lang == "zh" else {}
    for name, fig in figures(lang, glyph_episode, traces):
        assert_words(fig.layout.title.text, f"{name}: title", lang, raw)
        for axis_name, axis in cartesian_axes(fig):
            assert_words(axis.title.text, f"{name}: {axis_name} title", lang, raw)
            assert axis.title.text.strip() not in ("#", "value", "值"), (name, axis_name)
        if any(t.type == "scatter3d" for t in fig.data):
            for axis_name in ("xaxis", "yaxis", "zaxis"):
                assert_words(fig.layout.scene[axis_name].title.text, f"{name}: scene {axis_name}", lang, raw)
        for t in fig.data:
            if t.type == "heatmap":   # a heatmap's key is its colour bar
                assert_words(t.colorbar.title.text, f"{name}: colour bar", lang, raw)
        groups = series(fig)
        if len(groups) > 1:   # more than one series: each has a legend entry, in words
            assert fig.layout.showlegend is not False, f"{name}: {len(groups)} series and no legend"
            for key, members in groups.items():
                shown = [t for t in members if t.showlegend is not False]
                assert shown, f"{name}: series {key!r} has no legend entry"
                if shown[0].legendgroup != "classes":   # class names are data, not words
                    assert_words(shown[0].name, f"{name}: legend entry", lang, raw)
        how = how_to_read(fig)
        assert_words(how, f"{name}: how to read", lang, raw)
        if lang == "zh":
            assert how != how_to_read(english[name]), f"{name}: the Chinese caption is the English one"
            assert fig.layout.title.text != english[name].layout.title.text, f"{name}: title not translated"


def test_every_learners_trace_extras_are_declared_and_translated(traces):
    keys = all_extras_keys(traces) - SKIP_EXTRAS
    assert {"attention", "uncertainty", "fast_weight_norm", "head_weight_change", "posterior_std"} <= keys
    for key in sorted(keys):
        assert key in EXTRAS, f"trace extras key {key!r} is not declared in app/figures/extras.py"
        for suffix in ("", ".how"):
            k = f"extras.{key}{suffix}"
            assert EN.get(k) and ZH.get(k), f"{k} missing in en or zh"
            assert EN[k] != ZH[k] and CJK.search(ZH[k]), f"{k} not translated"
        spec = EXTRAS[key]
        for label in (spec.x, spec.y) + ((spec.z,) if spec.z else ()):
            assert EN.get("fig." + label) and CJK.search(ZH.get("fig." + label, "")), (key, label)


def test_per_step_extras_count_steps_and_per_support_extras_are_not_called_queries(traces):
    classification, _ = traces
    # Meta Networks' fast weights are one per support example: with as many supports as
    # queries (6 and 6 here), they must still not be drawn as "one bar per query"
    metanet = classification["metanet"][-1]
    assert len(metanet.extras["fast_weight_norm"]) == N_WAY * N_QUERY == N_WAY * K_SHOT
    fw = [f for f in trace_extras(metanet, n_query=N_WAY * N_QUERY, lang="en")
          if f.layout.meta["extra"] == "fast_weight_norm"][0]
    assert fw.layout.xaxis.title.text == EN.get("fig.axis.support_stored")
    # the distance after steps 0..3, drawn against steps 0..3: the slider's numbering
    step = classification["reptile"][3]
    fig = {f.layout.meta["extra"]: f for f in trace_extras(step, n_query=N_WAY * N_QUERY, lang="en")}
    assert list(fig["distance_to_init"].data[0].x) == [0, 1, 2, 3]
    assert fig["distance_to_init"].layout.xaxis.title.text == EN.get("fig.axis.adapt_step")


def test_motion_plot_has_a_key_of_classes_and_no_title_over_its_legend():
    pts = np.random.default_rng(0).normal(size=(3, 5, 2))
    fig = embedding_motion(pts, [0, 1, 2, 0, 1], upto=1, kinds=["query"] * 3 + ["prototype"] * 2,
                           class_names=["Greek/alpha", "Greek/beta", "Greek/gamma"], lang="en")
    assert fig.layout.title.text
    # the legend hangs under the plot, clear of the title at the top
    assert fig.layout.legend.y is not None and fig.layout.legend.y <= 0 and fig.layout.legend.yanchor == "top"
    key = [t.name for t in fig.data if t.legendgroup == "classes"]
    assert key == ["alpha", "beta", "gamma"]
    assert fig.data[0].name == merge_labels(None, "en")["path"] and fig.data[0].showlegend is not False


def test_compare_titles_wrap_values_are_rounded_and_regression_says_mean_squared_error():
    long = "Mean over 600 identical episodes, 95% confidence interval, learners side by side"
    fig = comparison_figure({"maml": {"accuracy": 48.04321, "ci95": 1.5111}}, title=long, lang="en")
    lines = fig.layout.title.text.split("<br>")
    assert len(lines) >= 2 and " ".join(lines) == long        # wrapped, nothing cut
    assert fig.layout.margin.t >= 22 * len(lines)               # and the margin holds every line
    assert list(fig.data[0].text) == ["48.0 ± 1.5"]
    zh_title = wrap_title("各学习器在六百个相同任务上的平均准确率与百分之九十五置信区间", 20)
    assert all(len(line) <= 10 for line in zh_title.split("<br>"))   # CJK characters count double
    mse = comparison_figure({"maml": {"mse": 0.123456, "ci95": 0.0213}}, metric="mse", lang="en")
    assert list(mse.data[0].text) == ["0.123 ± 0.0213"]
    assert "mean squared error" in mse.layout.yaxis.title.text and "lower is better" in mse.layout.yaxis.title.text
    assert "mean squared error" in mse.layout.title.text.lower().replace("<br>", " ")
    assert not mse.layout.shapes                                # no "chance" line for regression
    mse_zh = comparison_figure({"maml": {"mse": 0.1, "ci95": 0.02}}, metric="mse", lang="zh")
    assert "均方误差" in mse_zh.layout.yaxis.title.text


# ------------------------------------------------------------------ hyper-parameters, i18n
def test_every_declared_hyperparameter_has_a_label_and_help_in_both_languages():
    for name in available():
        for hp in get_learner_class(name).all_hyperparams():
            # the texts exist as keys: no silent fallback to the raw name or English
            assert f"hp.{hp.name}.label" in EN and f"hp.{hp.name}.label" in ZH, (name, hp.name)
            assert f"hp.{hp.name}.help" in EN and f"hp.{hp.name}.help" in ZH, (name, hp.name)
    from app.widgets import hyperparam_text   # what the Train page's controls show
    for name in available():
        for hp in get_learner_class(name).all_hyperparams():
            texts = {lang: hyperparam_text(hp, name, lang) for lang in LANGS}
            for lang, (label, help_text) in texts.items():
                assert label != hp.name and not IDENTIFIER.match(label), (name, hp.name, lang, label)
                assert help_text, (name, hp.name, lang)
            assert CJK.search(texts["zh"][0]) and CJK.search(texts["zh"][1]), (name, hp.name)
            assert texts["zh"] != texts["en"], (name, hp.name)


def _literal_keys_used_in_app() -> set[str]:
    """Every key the app passes to ``t()`` as a string literal, and every figure word
    the figure functions look up by a literal (``lab["..."]``)."""
    keys = set()
    for path in (ROOT / "app").rglob("*.py"):
        src = path.read_text(encoding="utf-8")
        keys |= set(re.findall(r"""\bt\(\s*["']([a-z][\w.]*[\w])["']""", src))
        if "figures" in path.parts:
            for k in re.findall(r"""\blab\[["']([\w.]+)["']\]""", src):
                keys.add(k if k.startswith("extras.") else "fig." + k)
    return keys


def test_every_i18n_key_used_exists_in_both_languages_and_chinese_is_translated():
    used = _literal_keys_used_in_app()
    aliases = {"fig.train": "fig.training", "fig.val": "fig.validation", "fig.true": "fig.true_curve"}
    used = {aliases.get(k, k) for k in used}
    assert "fig.support" in used and "episodes.new" in used   # the scan finds what the app uses
    assert sorted(k for k in used if k not in EN) == [], "used but not in en.json"
    assert sorted(k for k in used if k not in ZH) == [], "used but not in zh.json"
    assert sorted(set(EN) ^ set(ZH)) == [], "en.json and zh.json have different keys"
    untranslated = sorted(k for k in EN if k not in SAME_IN_BOTH and (EN[k] == ZH[k] or not CJK.search(ZH[k])))
    assert untranslated == [], "zh.json repeats the English text"


def test_every_learners_step_labels_read_in_chinese(traces):
    from app.figures.step_labels import step_label
    classification, regression = traces
    labels = {s.label for tr in [*classification.values(), *regression.values()] for s in tr}
    assert len(labels) > 20
    untranslated = sorted(lab for lab in labels if not CJK.search(step_label(lab, "zh")))
    assert untranslated == [], "step labels no pattern in app/figures/step_labels.py translates"
    # the hover of the adaptation curves names each step in the reader's language
    fig = trace_curves(classification["reptile"], 3, lang="zh")
    assert "内循环第 3 步" in fig.data[0].hovertext[3]


def test_the_pages_figures_and_controls_follow_the_sessions_language():
    """In a real Streamlit run the figures take the session's language with no ``lang``
    passed (the pages do not pass one), and the Train page labels hyper-parameters in words."""
    from app_harness import charts, goto, new_app
    at = new_app(lang="zh", k_shot=1, n_query=2)
    spec = json.loads(charts(at)["episode_support"])
    assert CJK.search(spec["layout"]["title"]["text"])
    assert CJK.search(spec["layout"]["meta"]["how_to_read"])
    goto(at, "train")
    hp_labels = {w.key: w.label for kind in ("number_input", "select_slider", "slider", "toggle", "selectbox")
                 for w in getattr(at, kind) if str(w.key).startswith("hp_")}
    assert hp_labels and all(CJK.search(label) for label in hp_labels.values()), hp_labels
