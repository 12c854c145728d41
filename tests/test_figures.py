"""The figure functions: data in, Plotly figure out, with the traces and counts the
pages rely on. Trace steps are built directly from numpy arrays, as learners do."""
import numpy as np
import plotly.graph_objects as go
import pytest

from app.figures import WRONG_COLOR, merge_labels
from app.figures.adaptation import embedding_motion, probability_bars, query_predictions, trace_extras
from app.figures.compare import comparison_figure
from app.figures.curves import smooth, trace_curves, training_curves
from app.figures.embedding import embedding_figure, selected_points
from app.figures.episodes import episode_grid, regression_plot, support_query_figures
from app.figures.images import braille_thumbnail, compose_grid, png_bytes, to_display
from metarep_core.episodes import Episode
from metarep_core.learners.base import TraceStep

N_WAY, N_QUERY = 5, 3
EN = merge_labels(None, "en")   # the figures' English words (app/i18n/en.json)


@pytest.fixture(scope="module")
def episode_arrays():
    """A 5-way, 3-query set of 28x28 images (n, 1, H, W) whose class shows in them,
    and predicted probabilities with exactly four mistakes."""
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(N_WAY), N_QUERY)
    x = rng.random((len(y), 1, 28, 28)).astype(np.float32) * 0.2
    for i, c in enumerate(y):
        x[i, 0, 2 + 5 * c:6 + 5 * c, :] = 1.0   # a bright band at a class-specific height
    probs = np.full((len(y), N_WAY), 0.05)
    pred = y.copy()
    pred[[0, 4, 8, 13]] = (y[[0, 4, 8, 13]] + 1) % N_WAY
    probs[np.arange(len(y)), pred] = 0.8
    return x, y, probs / probs.sum(1, keepdims=True), [f"Alpha/char{c}" for c in range(N_WAY)]


def trace_of(n_steps=4, n_q=N_WAY * N_QUERY, d=8, seed=0):
    rng = np.random.default_rng(seed)
    return [TraceStep(step=s, label=f"step {s}", support_loss=1.5 / (s + 1), support_accuracy=0.2 + 0.2 * s,
                      query_loss=1.6 / (s + 1) + 0.1, query_accuracy=0.2 + 0.15 * s,
                      query_probs=rng.dirichlet(np.ones(N_WAY), n_q), query_emb=rng.normal(size=(n_q, d)))
            for s in range(n_steps)]


# ------------------------------------------------------------------ images
@pytest.mark.parametrize("shape, expected", [
    ((4, 1, 6, 5), (4, 6, 5)), ((4, 6, 5), (4, 6, 5)), ((4, 3, 6, 5), (4, 6, 5, 3)),
    ((4, 6, 5, 3), (4, 6, 5, 3)), ((4, 6, 5, 1), (4, 6, 5)), ((4, 1, 6, 4), (4, 6, 4)),
    ((4, 3, 4, 4), (4, 4, 4, 3)), ((4, 4, 4, 3), (4, 4, 4, 3)),
])
def test_to_display_accepts_every_image_layout(shape, expected):
    out = to_display(np.full(shape, 2.0))
    assert out.shape == expected and out.max() == 1.0   # clipped to [0, 1]


def test_compose_grid_places_each_image_and_frames_it():
    imgs = np.stack([np.full((1, 2, 2), v) for v in (0.0, 0.5, 1.0)])
    canvas = compose_grid(imgs, [[0, 1], [2]], pad=1, border=1, border_colors={1: "#FF0000"})
    cell = 2 + 2 * 1 + 1
    assert canvas.shape == (2 * cell - 1, 2 * cell - 1, 3)
    assert (canvas[1:3, 1:3] == 0).all()                         # image 0 at row 0, col 0
    assert (canvas[1:3, cell + 1:cell + 3] == 128).all()         # image 1 at row 0, col 1
    assert tuple(canvas[0, cell]) == (255, 0, 0)                 # ... framed red
    assert (canvas[cell + 1:cell + 3, 1:3] == 255).all()         # image 2 at row 1, col 0


def test_braille_thumbnail_sets_the_dots_of_inked_pixels():
    img = np.zeros((4, 2))
    assert braille_thumbnail(img, width=1, dark_ink=False) == "\u2800"
    img[0, 0] = 1.0                                              # top-left dot = bit 0x01
    assert braille_thumbnail(img, width=1, dark_ink=False) == "\u2801"
    img[3, 1] = 1.0                                              # bottom-right dot = bit 0x80
    assert braille_thumbnail(img, width=1, dark_ink=False) == "\u2881"
    lines = braille_thumbnail(np.ones((28, 28)), width=14, dark_ink=False).split("<br>")
    assert len(lines) == 7 and all(line == "\u28ff" * 14 for line in lines)


# ------------------------------------------------------------------ episodes
def test_episode_grid_is_one_image_with_a_hover_point_per_example(episode_arrays):
    x, y, _, names = episode_arrays
    fig = episode_grid(x, y, names)
    kinds = [t.type for t in fig.data]
    assert kinds == ["image", "scatter"]
    assert fig.data[0].source.startswith("data:image/png;base64,")
    hover = fig.data[1]
    assert sorted(hover.customdata) == list(range(len(y)))
    assert "Alpha/char2" in hover.hovertext[list(hover.customdata).index(7)]
    assert list(fig.layout.yaxis.ticktext) == names   # one row per class, headed by its name


def test_query_predictions_mark_exactly_the_wrong_ones(episode_arrays):
    x, y, probs, names = episode_arrays
    fig = query_predictions(x, y, probs, names, title="after 5 steps")
    captions = fig.data[2]
    colors = list(captions.textfont.color)
    assert len(captions.text) == len(y)
    assert colors.count(WRONG_COLOR) == int((probs.argmax(1) != y).sum()) == 4
    first = list(captions.customdata or fig.data[1].customdata).index(0)
    assert captions.text[first].startswith("B ")                # query 0 predicted as class B
    assert fig.layout.title.text == "after 5 steps"


def test_regression_plot_draws_the_true_curve_points_and_each_model_curve():
    grid = np.linspace(-5, 5, 50)
    fig = regression_plot(grid, np.sin(grid), [0.0, 1.0], [0.0, 0.8],
                          {"step 0": (grid, 0 * grid), "step 1": (grid, 0.5 * grid)},
                          query_x=[2.0], query_y=[0.9], labels={"true": "真实函数"}, y_range=(-2, 2))
    names = [t.name for t in fig.data]
    assert names == ["真实函数", "step 0", "step 1", "query", "support"]
    assert list(fig.layout.yaxis.range) == [-2, 2]


# ------------------------------------------------------------------ curves
def test_training_curves_show_train_and_validation_with_intervals():
    history = [{"step": s, "loss": 2.0 - s / 100, "accuracy": 20 + s / 2} for s in range(1, 101)]
    val = [{"step": s, "val_loss": 1.9 - s / 100, "val_accuracy": 25 + s / 2, "val_ci95": 3.0}
           for s in (10, 50, 100)]
    fig = training_curves(history, val, labels={"val": "验证"})
    val_traces = [t for t in fig.data if t.name == "验证"]
    assert len(val_traces) == 2                                  # on the loss and accuracy panels
    acc_val = [t for t in val_traces if t.error_y.array is not None][0]
    assert list(acc_val.error_y.array) == [3.0, 3.0, 3.0]
    assert len([t for t in fig.data if t.name == "training"]) == 4   # raw + smoothed, per panel


def test_training_curves_handle_no_history_and_regression():
    assert isinstance(training_curves([], None), go.Figure)
    fig = training_curves([{"step": 1, "loss": 0.5, "mse": 0.5}], [{"step": 1, "val_mse": 0.7, "val_loss": 0.7}],
                          regression=True)
    assert fig.layout.yaxis2.title.text == EN["axis.mse"]


def test_smooth_is_the_bias_corrected_moving_average():
    np.testing.assert_allclose(smooth([4.0, 4.0, 4.0], 0.9), [4.0, 4.0, 4.0])
    np.testing.assert_allclose(smooth([0.0, 1.0], 0.5), [0.0, 0.5 / 0.75])


def test_trace_curves_draw_up_to_the_step_with_fixed_axes():
    trace = trace_of()
    figs = [trace_curves(trace, upto) for upto in range(len(trace))]
    for upto, fig in enumerate(figs):
        lines = [t for t in fig.data if t.mode == "lines+markers"]
        assert len(lines) == 4 and all(len(t.x) == upto + 1 for t in lines)
    for axis in ("xaxis", "yaxis", "yaxis2"):
        ranges = {tuple(getattr(f.layout, axis).range) for f in figs}
        assert len(ranges) == 1, f"{axis} rescales while scrubbing: {ranges}"


def test_trace_curves_of_a_regression_trace_have_only_the_loss_panel():
    trace = [TraceStep(step=s, label="", support_loss=1.0 / (s + 1), query_loss=1.2 / (s + 1)) for s in range(3)]
    fig = trace_curves(trace, 2)
    assert fig.layout.yaxis.title.text == EN["axis.loss_mse"] and "yaxis2" not in fig.layout.to_plotly_json()


# ------------------------------------------------------------------ extras
def test_trace_extras_are_drawn_by_shape():
    n_q, n_s = N_WAY * N_QUERY, N_WAY
    rng = np.random.default_rng(1)
    step = TraceStep(step=1, label="", extras={
        "usage": rng.random((4, 8)), "attention": rng.random((n_q, n_s)), "uncertainty": rng.random(n_q),
        "cg_residuals": np.array([1.0, 0.1, 0.01]), "curve_x": np.arange(5.0), "curve_y": np.arange(5.0),
        "note": "not an array", "kernel": rng.random((2, 2, 2)), "link": rng.random((8, 8))})
    figs = trace_extras(step, n_query=n_q, labels={"attention": "注意力"})
    keys = [f.layout.meta["extra"] for f in figs]
    assert keys == ["attention", "uncertainty", "usage", "link", "cg_residuals"]
    types = [f.data[0].type for f in figs]
    assert types == ["heatmap", "bar", "heatmap", "heatmap", "scatter"]
    assert figs[0].layout.title.text == "注意力" and figs[2].layout.title.text == EN["extras.usage"]
    assert len(figs[1].data[0].y) == n_q
    np.testing.assert_array_equal(figs[2].data[0].z, step.extras["usage"])
    assert figs[4].layout.yaxis.type == "log"


def test_trace_extras_of_a_plain_step_are_empty():
    assert trace_extras(trace_of()[0], n_query=15) == []


# ------------------------------------------------------------------ motion
def test_embedding_motion_draws_paths_up_to_the_step_on_fixed_axes():
    T, n_q = 4, 6
    rng = np.random.default_rng(2)
    pts = rng.normal(size=(T, n_q + 2, 2)).cumsum(0)
    y = np.array([0, 0, 0, 1, 1, 1, 0, 1])
    kinds = ["query"] * n_q + ["prototype"] * 2
    wrong = np.array([True, False, False, True, False, False, False, False])
    figs = [embedding_motion(pts, y, upto=u, kinds=kinds, wrong=wrong, class_names=["a", "b"]) for u in range(T)]
    # the path (empty at step 0), the kinds, the red ring, then the colour key of the classes
    assert [t.name for t in figs[0].data] == [EN["path"], "query", "prototype", "misclassified", "a", "b"]
    paths = figs[2].data[0]
    assert paths.name == EN["path"] and len(paths.x) == (n_q + 2) * (2 + 1 + 1)   # 3 positions + a gap each
    for fig, u in zip(figs, range(T)):
        queries = [t for t in fig.data if t.name == "query"][0]
        np.testing.assert_allclose(queries.x, pts[u, :n_q, 0])
    assert len({tuple(f.layout.xaxis.range) for f in figs}) == 1
    assert len([t for t in figs[3].data if t.name == "misclassified"][0].x) == 2


# ------------------------------------------------------------------ embedding space
def embedding_inputs(n_samples=30, seed=3):
    rng = np.random.default_rng(seed)
    n_s, n_q = N_WAY, N_WAY * N_QUERY
    y = np.concatenate([np.arange(N_WAY), np.repeat(np.arange(N_WAY), N_QUERY),
                        rng.integers(N_WAY, N_WAY + 3, n_samples), np.arange(N_WAY)])
    kinds = np.array(["support"] * n_s + ["query"] * n_q + ["sample"] * n_samples + ["prototype"] * N_WAY)
    wrong = np.zeros(len(y), bool)
    wrong[n_s + np.array([1, 5, 6])] = True
    images = rng.random((len(y), 1, 28, 28)).astype(np.float32)
    names = [f"Alpha/char{c}" for c in range(N_WAY + 3)]
    groups = ["Alpha"] * (n_s + n_q) + ["Beta"] * n_samples + ["Alpha"] * N_WAY
    return y, kinds, wrong, images, names, groups


@pytest.mark.parametrize("dim", [2, 3])
def test_embedding_figure_traces_symbols_and_misclassified_rings(dim):
    y, kinds, wrong, images, names, _ = embedding_inputs()
    pts = np.random.default_rng(4).normal(size=(len(y), dim))
    fig = embedding_figure(pts, y, class_names=names, kinds=kinds, wrong=wrong, images=images,
                           labels={"wrong": "分错"})
    by_name = {t.name: t for t in fig.data}
    assert list(by_name) == ["sample", "support", "query", "prototype", "分错"]
    assert {t.type for t in fig.data} == ({"scattergl", "scatter"} if dim == 2 else {"scatter3d"})
    assert len(by_name["分错"].x) == wrong.sum() == 3
    assert sorted(by_name["分错"].customdata) == list(np.flatnonzero(wrong))
    assert len(by_name["prototype"].x) == N_WAY
    star = "star" if dim == 2 else "diamond"
    assert by_name["prototype"].marker.symbol == star and by_name["support"].marker.symbol == "square"
    shown = np.concatenate([t.customdata for t in fig.data if t.name != "分错"])
    assert sorted(shown) == list(range(len(y)))                 # every point once, indexed


def test_embedding_hover_names_the_point_and_draws_its_image():
    y, kinds, wrong, images, names, groups = embedding_inputs()
    fig = embedding_figure(np.zeros((len(y), 2)), y, class_names=names, kinds=kinds, wrong=wrong,
                           images=images, groups=groups)
    sample = [t for t in fig.data if t.name == "sample"][0]
    i = int(sample.customdata[0])
    text = sample.hovertext[0]
    assert names[y[i]] in text and f"#{i}" in text and "Beta" in text
    assert any(0x2800 <= ord(ch) <= 0x28FF for ch in text)       # the braille drawing
    proto = [t for t in fig.data if t.name == "prototype"][0]
    assert not any(0x2800 <= ord(ch) <= 0x28FF for ch in proto.hovertext[0])   # prototypes have no image
    no_images = embedding_figure(np.zeros((len(y), 2)), y, class_names=names, kinds=kinds)
    assert all("#" in t for tr in no_images.data for t in tr.hovertext)


def test_embedding_colour_by_group_uses_one_colour_per_alphabet():
    y, kinds, wrong, images, names, groups = embedding_inputs()
    fig = embedding_figure(np.zeros((len(y), 2)), y, class_names=names, kinds=kinds, groups=groups,
                           color_by="group")
    colours = {c for t in fig.data for c in t.marker.color}
    assert len(colours) == 2 and set(fig.layout.meta["legend_colors"]) == {"Alpha", "Beta"}
    by_class = embedding_figure(np.zeros((len(y), 2)), y, class_names=names, kinds=kinds)
    assert len({c for t in by_class.data for c in t.marker.color}) == len(set(y.tolist()))


def test_selected_points_reads_streamlit_selection_events():
    event = {"selection": {"points": [{"curve_number": 2, "point_index": 0, "customdata": [7]},
                                      {"curve_number": 0, "point_index": 3, "customdata": 41},
                                      {"curve_number": 4, "point_index": 0, "customdata": [7]}],
                           "point_indices": [0, 3, 0], "box": [], "lasso": []}}
    assert selected_points(event) == [7, 41]
    assert selected_points(event["selection"]) == [7, 41]
    assert selected_points(None) == [] and selected_points({"selection": {"points": []}}) == []


# ------------------------------------------------------------------ compare, labels
def test_comparison_figure_has_a_bar_and_interval_per_learner():
    fig = comparison_figure({"maml": {"accuracy": 48.0, "ci95": 1.5}, "protonet": {"accuracy": 61.0, "ci95": 1.2}},
                            chance=20.0)
    bar = fig.data[0]
    assert [x.split("<br>")[0] for x in bar.x] == ["MAML", "Prototypical Networks"]   # titles, not keys
    assert list(bar.error_y.array) == [1.5, 1.2]
    assert fig.layout.shapes[0].y0 == 20.0


def test_labels_override_defaults_and_ignore_unknown_keys():
    lab = merge_labels({"loss": "损失", "nonsense": "x", "query": None})
    assert lab["loss"] == "损失" and lab["query"] == "query" and lab["nonsense"] == "x"


def test_prototype_labels_are_short_unless_two_would_read_the_same():
    kinds = ["prototype"] * 2
    fig = embedding_figure(np.eye(2), [0, 1], class_names=["Greek/char01", "Greek/char02"], kinds=kinds)
    assert list(fig.data[0].text) == ["char01", "char02"]
    fig = embedding_figure(np.eye(2), [0, 1], class_names=["Greek/char01", "Latin/char01"], kinds=kinds)
    assert list(fig.data[0].text) == ["Greek/char01", "Latin/char01"]


def test_support_query_figures_head_rows_with_alphabet_and_class(episode_arrays):
    x, y, _, names = episode_arrays
    ep = Episode(x[::N_QUERY], y[::N_QUERY], x, y, [n.split("/")[1] for n in names], N_WAY, 1, N_QUERY, 0,
                 info={"groups": ["Greek", "Greek", "Latin", "Latin", "Runic"]})
    support, query = support_query_figures(ep)
    assert list(support.layout.yaxis.ticktext) == ["Greek / char0", "Greek / char1", "Latin / char2",
                                                    "Latin / char3", "Runic / char4"]
    assert len(support.data[1].x) == N_WAY and len(query.data[1].x) == N_WAY * N_QUERY


def test_probability_bars_colour_a_wrong_prediction_and_outline_the_truth():
    fig = probability_bars([0.1, 0.7, 0.2], ["a", "b", "c"], true_class=2)
    bar = fig.data[0]
    assert bar.marker.color[1] == WRONG_COLOR and list(bar.marker.line.width) == [0, 0, 3]


def test_png_bytes_is_a_png_of_the_image():
    import io

    from PIL import Image
    img = Image.open(io.BytesIO(png_bytes(np.full((1, 6, 4), 0.5))))
    assert img.size == (4, 6) and img.getpixel((0, 0)) == 128
