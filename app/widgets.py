"""Controls built from a learner's declared :class:`HyperParam` metadata.

No algorithm is named here: an int becomes a number input, a float a slider
(log-spaced values when ``log``), a bool a toggle, a choice a select box. Keys
are ``hp_<algorithm>_<name>`` so two algorithms' ``meta_lr`` don't share state.
"""
from __future__ import annotations

import math

import numpy as np
import streamlit as st

from app.i18n import DEFAULT_LANG, current_lang, strings


def _log_options(low: float, high: float, value: float) -> list[float]:
    """About 8 values per decade between ``low`` and ``high``, plus ``value``."""
    n = max(2, int(round(8 * math.log10(high / low))) + 1)
    grid = {float(f"{v:.3g}") for v in np.geomspace(low, high, n)}
    grid.add(float(value))
    return sorted(grid)


def hyperparam_control(hp, value, key: str, lang: str | None = None):
    """One widget for one declared hyper-parameter; returns the chosen value."""
    # The learner's own help text is English; a translation, where the language has
    # one for this name ("hp.<name>"), replaces it. The label stays the parameter's name.
    label, help_text = hp.name, hp.help or None
    if lang and lang != DEFAULT_LANG and f"hp.{hp.name}" in strings(lang):
        help_text = strings(lang)[f"hp.{hp.name}"]
    if hp.kind == "bool":
        return st.toggle(label, value=bool(value), key=key, help=help_text)
    if hp.kind == "choice":
        choices = list(hp.choices)
        return st.selectbox(label, choices, index=choices.index(value) if value in choices else 0,
                            key=key, help=help_text)
    bounded = hp.low is not None and hp.high is not None
    if hp.kind == "int":
        return int(st.number_input(label, min_value=None if hp.low is None else int(hp.low),
                                   max_value=None if hp.high is None else int(hp.high),
                                   value=int(value), step=1, key=key, help=help_text))
    if hp.log and bounded and hp.low > 0:
        return float(st.select_slider(label, _log_options(hp.low, hp.high, value), value=float(value),
                                      format_func=lambda v: f"{v:.3g}", key=key, help=help_text))
    if bounded:
        return float(st.slider(label, float(hp.low), float(hp.high), float(value), key=key,
                               help=help_text))
    return float(st.number_input(label, value=float(value), key=key, help=help_text, format="%.4g"))


def hyperparam_controls(learner_cls, values: dict) -> dict:
    """Widgets for every declared hyper-parameter of ``learner_cls`` (common ones
    first), starting from ``values``; returns ``{name: chosen value}``."""
    chosen = {}
    for hp in learner_cls.all_hyperparams():
        value = values.get(hp.name, hp.default)
        chosen[hp.name] = hyperparam_control(hp, value, key=f"hp_{learner_cls.name}_{hp.name}",
                                             lang=current_lang())
    return chosen
