"""AppTest suite, part 1: every page renders on every dataset; each sidebar and page
control changes what is shown; the language switch; the URL; bad values.

Runs the real app (app/main.py, st.navigation) in Streamlit's AppTest, with the
real core and figure functions; small episodes keep it fast.
"""
from __future__ import annotations

import json

import pytest

from app_harness import PAGES, charts, goto, new_app, problems, set_and_run, strings, texts

EN, ZH = strings("en"), strings("zh")


@pytest.fixture(scope="module")
def app():
    return new_app()


def test_translations_have_the_same_keys_and_placeholders():
    # hyper-parameters have a label and help in both languages now ("hp.<name>.label", ".help")
    assert set(EN) == set(ZH)
    import string
    fmt = string.Formatter()
    for key in EN:  # every placeholder survives translation
        names = lambda s: sorted(f for _, f, _, _ in fmt.parse(s) if f)  # noqa: E731
        assert names(EN[key]) == names(ZH[key]), key


def test_default_opens_on_omniglot_5way_1shot_with_every_page(app):
    """Issue 9: the app opens on the bundled real Omniglot, 5-way 1-shot, with the
    shipped checkpoint of the default learner."""
    assert problems(app) == []
    assert app.title[0].value == EN["page.episodes"]
    q = app.query_params
    assert (q["dataset"], q["n_way"], q["k_shot"], q["lang"]) == ("omniglot", "5", "1", "en")
    assert {"episode_support", "episode_query"} <= set(charts(app))
    for page in PAGES:
        goto(app, page)
        assert problems(app) == [], page
        assert app.title[0].value == EN[f"page.{page}"]
        assert not app.error, (page, [e.value for e in app.error])
    model = app.session_state["models"][("protonet", "omniglot", 5, (1, 28, 28))]
    assert model.source == "shipped" and model.meta["file"] == "protonet_omniglot_5w1s.safetensors"


@pytest.mark.parametrize("dataset,n_way", [("glyphs", 5), ("digits", 3), ("sinusoid", 1)])
def test_every_page_renders_on_each_dataset(dataset, n_way):
    at = new_app(dataset=dataset, n_way=n_way, k_shot=2, n_query=3)
    assert at.query_params["dataset"] == dataset  # offered, not reset to the default
    for page in PAGES:
        goto(at, page)
        assert problems(at) == [], (dataset, page)
        assert not at.error, (dataset, page, [e.value for e in at.error])
    if dataset == "sinusoid":
        goto(at, "episodes")
        assert "episode_regression" in charts(at)
        # only algorithms that declare regression are offered
        from app.services import algorithm_label
        from metarep_core.learners import available, get_learner_class
        offered = [algorithm_label(a) for a in available() if "regression" in get_learner_class(a).tasks]
        assert at.selectbox(key="algorithm").options == offered
        assert 0 < len(offered) < len(available())


def test_new_episode_changes_seed_url_and_grids():
    at = new_app(seed=3)
    before = charts(at)["episode_support"]
    at.button(key="new_episode").click().run()
    assert at.query_params["seed"] == "4"
    assert at.session_state["seed"] == 4
    assert charts(at)["episode_support"] != before


@pytest.mark.parametrize("control,value", [("n_way", 3), ("k_shot", 2), ("n_query", 2),
                                            ("seed", 11), ("split", "val")])
def test_each_sidebar_control_changes_the_episode(app, control, value):
    goto(app, "episodes")
    set_and_run(app, n_way=5, k_shot=1, n_query=5, seed=0, split="test")
    before = (charts(app), texts(app))
    set_and_run(app, **{control: value})
    assert problems(app) == [] and not app.error
    assert app.query_params[control] == str(value)
    assert (charts(app), texts(app)) != before


def test_algorithm_choice_lists_every_registered_learner_with_family_and_paper(app):
    from metarep_core.learners import available, get_learner_class
    goto(app, "episodes")
    set_and_run(app, dataset="glyphs", n_way=5)
    from app.services import algorithm_label
    options = [a for a in available() if "classification" in get_learner_class(a).tasks]
    assert app.selectbox(key="algorithm").options == [algorithm_label(a) for a in options]
    for name in options[:3]:
        set_and_run(app, algorithm=name)
        assert get_learner_class(name).paper in texts(app)
        assert app.query_params["algorithm"] == name


def test_link_with_settings_opens_the_same_episode_in_chinese():
    a = new_app(seed=42, k_shot=2, lang="zh")
    b = new_app(seed=42, k_shot=2, lang="zh")
    assert charts(a)["episode_support"] == charts(b)["episode_support"]
    assert a.title[0].value == ZH["page.episodes"]
    assert ZH["sidebar.dataset"] == a.selectbox(key="dataset").label


def test_language_switch_changes_labels_on_every_page():
    at = new_app()
    set_and_run(at, lang="zh")
    assert at.query_params["lang"] == "zh"
    for page in PAGES:
        goto(at, page)
        assert at.title[0].value == ZH[f"page.{page}"]
        assert problems(at) == []
    set_and_run(at, lang="en")
    assert at.title[0].value == EN["page.theory"]


def test_unusable_url_values_are_ignored_with_a_warning():
    at = new_app(n_way="lots", seed="-3", lang="fr")
    assert problems(at) == []
    assert "n_way=lots" in texts(at)
    assert at.session_state["n_way"] == 5 and at.session_state["seed"] == 0


# (digits with n_way = 5 was an impossible episode too; issue 10 made it adjust N with a
# note instead: tests/test_app_classroom.py)
@pytest.mark.parametrize("values,needle", [({"k_shot": 15, "n_query": 10}, "k_shot + n_query")])
def test_impossible_episode_shows_the_core_message_and_app_stays_usable(values, needle):
    at = new_app()
    for page in ("episodes", "adapt", "embedding"):
        goto(at, page)
        set_and_run(at, **values)
        assert problems(at) == []
        assert any(needle in e.value for e in at.error), (page, [e.value for e in at.error])
    set_and_run(at, dataset="glyphs", n_way=5, k_shot=1, n_query=5)
    assert not at.error and "episode_support" not in charts(at)  # on embedding now
    goto(at, "episodes")
    assert "episode_support" in charts(at)


def test_train_page_builds_controls_from_every_learners_metadata(app):
    from metarep_core.learners import available, get_learner_class
    goto(app, "train")
    set_and_run(app, dataset="glyphs", n_way=5)
    for name in available():
        cls = get_learner_class(name)
        if "classification" not in cls.tasks:
            continue
        set_and_run(app, algorithm=name)
        assert problems(app) == [], name
        keys = {w.key for kind in ("number_input", "select_slider", "slider", "toggle", "selectbox")
                for w in getattr(app, kind)}
        for hp in cls.all_hyperparams():
            assert f"hp_{name}_{hp.name}" in keys, (name, hp.name)


def test_adaptation_slider_and_play_change_the_view(app):
    # an inner-loop learner (ANIL: the cheapest one) has a step per gradient step
    goto(app, "adapt")
    set_and_run(app, dataset="glyphs", algorithm="anil", n_way=5, k_shot=1, n_query=3, seed=0)
    slider = app.slider(key="adapt_step")
    assert slider.max >= 1
    first = (charts(app), texts(app))
    slider.set_value(slider.max).run()
    assert problems(app) == []
    assert (charts(app), texts(app)) != first
    app.button(key="adapt_play").click().run()  # play restarts from step 0 at the end
    assert app.session_state["_adapt_playing"] is True
    assert app.slider(key="adapt_step").value <= 1
    app.button(key="adapt_play").click().run()
    assert app.session_state["_adapt_playing"] is False


def test_adaptation_of_a_metric_learner_steps_through_shots(app):
    goto(app, "adapt")
    set_and_run(app, algorithm="protonet", k_shot=3)
    assert app.slider(key="adapt_step").max >= 2
    assert not [r for r in app.radio if r.key == "adapt_test_bn"]  # running statistics, said
    assert EN["adapt.bn_running"] in texts(app)
    set_and_run(app, k_shot=1)


def test_the_batch_norm_switch_of_a_gradient_learner_changes_its_predictions(app):
    """Issue 9: MAML-family learners switch between the query batch's statistics
    (transductive, the default) and the support set's on the adaptation page."""
    goto(app, "adapt")
    set_and_run(app, dataset="glyphs", algorithm="anil", n_way=5, k_shot=1, n_query=3, seed=0)
    switch = app.radio(key="adapt_test_bn")
    assert switch.value == "transductive" and switch.options == ["query batch (transductive)", "support set"]
    before = charts(app)["adapt_predictions"]
    switch.set_value("support").run()
    assert problems(app) == []
    assert charts(app)["adapt_predictions"] != before


def test_embedding_controls_change_the_projection(app):
    goto(app, "embedding")
    set_and_run(app, dataset="glyphs", algorithm="protonet", n_way=5, k_shot=1, n_query=3,
                emb_method="pca", emb_samples=50)
    assert {"emb_before", "emb_after"} <= set(charts(app))
    seen = [charts(app)["emb_after"]]
    for change in ({"emb_dim": 3}, {"emb_method": "tsne", "emb_perplexity": 5},
                   {"emb_method": "umap", "emb_neighbors": 5}, {"emb_samples": 0}):
        set_and_run(app, **change)
        assert problems(app) == [] and not app.error, change
        spec = charts(app)["emb_after"]
        assert spec not in seen, change
        seen.append(spec)
    set_and_run(app, emb_method="pca", emb_dim=2, emb_samples=50)


def test_compare_runs_learners_on_identical_episodes_and_exports(app):
    goto(app, "compare")
    set_and_run(app, dataset="glyphs", algorithm="protonet", n_way=5, k_shot=1, n_query=3, seed=0,
                split="test", compare_algorithms=["protonet", "anil"], compare_episodes=10)
    app.button(key="compare_run").click().run()
    assert problems(app) == []
    assert "compare_bars" in charts(app)
    keys = {b.proto.id.rsplit("-", 1)[-1] for b in app.get("download_button")}
    assert {"compare_csv", "compare_json"} <= keys
    results = app.session_state["compare_result"][1]
    assert set(results) == {"protonet", "anil"}
    # identical episodes: the page's scores are the core's for the same seeds
    from app.exports import comparison_csv, comparison_json
    from metarep_core.data import load_dataset
    from metarep_core.evaluation import episode_scores
    model = app.session_state["models"][("protonet", "glyphs", 5, (1, 28, 28))].learner
    direct = episode_scores(model, load_dataset("glyphs"), "test", n_way=5, k_shot=1, n_query=3,
                            episodes=10, seed=0)
    assert list(results["protonet"]["scores"]) == pytest.approx(list(direct))
    assert all(len(r["scores"]) == 10 for r in results.values())
    exported = json.loads(comparison_json(results, 100.0, metric="accuracy", settings={},
                                          dataset="glyphs"))
    assert exported["results"]["anil"]["accuracy"] == pytest.approx(
        100 * results["anil"]["scores"].mean())
    lines = comparison_csv(results, 100.0).strip().splitlines()
    assert lines[0] == "episode,protonet,anil" and len(lines) == 11


def test_theory_has_a_page_per_family_with_formulas_in_both_languages(app):
    goto(app, "theory")
    set_and_run(app, lang="en")
    assert len(app.tabs) == 4
    body = texts(app)
    assert "$$" in body and "Finn" in body and "Snell" in body
    set_and_run(app, lang="zh")
    assert "元学习" in texts(app)
    set_and_run(app, lang="en")


def test_regression_shows_one_output_and_keeps_n_for_classification():
    at = new_app(n_way=3, dataset="digits")
    set_and_run(at, dataset="sinusoid")
    assert at.number_input(key="n_way_fixed").value == 1
    assert at.session_state["_ctx"].settings.n_way == 1
    set_and_run(at, dataset="glyphs")
    assert at.number_input(key="n_way").value == 3
    assert at.query_params["n_way"] == "3"


def test_a_lesson_sets_n_while_a_regression_dataset_hides_it():
    at = new_app(dataset="sinusoid", n_way=3)
    assert at.number_input(key="n_way_fixed").value == 1 and at.query_params["n_way"] == "3"
    goto(at, "lessons")
    at.button(key="lesson_episode").click().run()  # glyphs, n_way = 5
    at.button(key="lesson_open").click().run()  # its first step opens Episodes
    assert problems(at) == [] and at.title[0].value == EN["page.episodes"]
    assert at.number_input(key="n_way").value == 5 and at.query_params["n_way"] == "5"
    assert at.session_state["_ctx"].settings.n_way == 5


def test_every_registered_learner_is_watched_with_no_page_code_for_it():
    """Adaptation of each registered learner: its trace is scrubbed to the end and each
    of its extras is drawn (generically, by shape), with no page naming an algorithm."""
    from metarep_core.learners import available, get_learner_class
    at = new_app(n_query=1, k_shot=1)
    goto(at, "adapt")
    for name in available():
        if "classification" not in get_learner_class(name).tasks:
            continue
        set_and_run(at, algorithm=name)
        if at.slider:  # scrub to the last step: every extra of the full trace is drawn
            slider = at.slider(key="adapt_step")
            slider.set_value(slider.max).run()
        assert problems(at) == [] and not at.error, name
        assert {"adapt_curves", "adapt_predictions"} <= set(charts(at)), name


def test_theory_lists_every_registered_algorithm_under_its_family(app):
    from metarep_core.learners import available, get_learner_class
    goto(app, "theory")
    set_and_run(app, lang="en")
    labels = " ".join(e.label for e in app.expander)
    for name in available():
        cls = get_learner_class(name)
        assert (cls.title or name) in labels, name


def test_a_lesson_opens_its_page_on_its_episode():
    """A lesson (a file in assets/lessons) starts on its first step; the step's button
    opens its page on the step's settings (each in the URL)."""
    from app.lessons import load_lessons
    lessons, refused = load_lessons()
    assert refused == []
    at = new_app()
    goto(at, "lessons")
    assert len([b for b in at.button if b.key.startswith("lesson_")]) == len(lessons)  # + the class join box
    lesson = next(l for l in lessons if l.steps[0].page == "adapt"
                  and l.step_settings(0).get("dataset") == "glyphs")
    at.button(key=f"lesson_{lesson.id}").click().run()
    assert lesson.steps[0].text["en"] in texts(at)
    at.button(key="lesson_open").click().run()
    assert problems(at) == []
    assert at.title[0].value == EN["page.adapt"]
    for key, value in lesson.step_settings(0).items():
        assert at.query_params[key] == str(value)
