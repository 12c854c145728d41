"""The lessons' figure to answer on: "which prototype will this query go to?",
answered by clicking a prototype (``st.plotly_chart(on_select=...)``)."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from . import color_of, merge_labels


def prototype_choice(prototypes_xy, query_xy, codes, *, title: str = "",
                     labels: dict | None = None) -> go.Figure:
    """The prototypes (n_way, 2) as large stars, each marked with its class code and
    carrying its class index as ``customdata`` (what a click answers), and the query
    (2,) as a black cross. Axes are the projection's two components."""
    lab = merge_labels(labels)
    p = np.asarray(prototypes_xy, float)
    q = np.asarray(query_xy, float).reshape(2)
    data = [dict(type="scatter", x=p[:, 0], y=p[:, 1], mode="markers+text", text=list(codes),
                 textposition="top center", customdata=list(range(len(p))),
                 marker=dict(symbol="star", size=26, color=[color_of(c) for c in range(len(p))],
                             line=dict(color="black", width=1)),
                 name=lab["prototype"], hovertemplate="%{text}<extra></extra>"),
            dict(type="scatter", x=[q[0]], y=[q[1]], mode="markers", name=lab["query"],
                 marker=dict(symbol="x", size=16, color="black"), hoverinfo="skip")]
    fig = go.Figure(data=data)
    fig.update_layout(title=dict(text=title or None), height=360, clickmode="event+select",
                      margin=dict(l=50, r=10, t=40 if title else 10, b=40),
                      legend=dict(orientation="h", y=-0.18),
                      xaxis=dict(title=lab.get("component_1", "PC 1"), zeroline=False),
                      yaxis=dict(title=lab.get("component_2", "PC 2"), zeroline=False))
    return fig
