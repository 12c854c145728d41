"""Helpers for the AppTest suites (tests/test_app_*.py): a fresh app session, page
switching, the texts a page shows, and small real zips of class folders."""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from app.pages import NAMES, script

ROOT = Path(__file__).resolve().parent.parent
MAIN = ROOT / "app" / "main.py"
PAGES = NAMES  # every page the app declares (app/pages.py), in its order


def new_app(**query):
    """A fresh AppTest session of app/main.py (URL query parameters optional), run once."""
    from streamlit.testing.v1 import AppTest
    at = AppTest.from_file(str(MAIN), default_timeout=120)
    at.query_params.update({k: str(v) for k, v in query.items()})
    # The embedding page defaults to UMAP; PCA keeps page-render tests fast (one test
    # covers UMAP on its own).
    at.session_state["emb_method"] = "pca"
    at.session_state["emb_samples"] = 50
    return at.run()


def goto(at, page: str):
    return at.switch_page(script(page)).run()


def set_and_run(at, **values):
    """Set sidebar/page widget values through session state (as a user's change would)."""
    for key, value in values.items():
        at.session_state[key] = value
    return at.run()


def problems(at) -> list[str]:
    return [e.value for e in at.exception]


def texts(at) -> str:
    """Everything readable on the page, joined (titles, captions, markdown, alerts)."""
    parts = []
    for kind in ("title", "header", "subheader", "caption", "markdown", "info", "warning",
                 "error", "success"):
        parts += [str(e.value) for e in getattr(at, kind)]
    return "\n".join(parts)


def charts(at) -> dict[str, str]:
    """Plotly charts by key -> their JSON spec (to tell whether a figure changed)."""
    out = {}
    for el in at.get("plotly_chart"):
        proto = el.proto
        key = proto.id.rsplit("-", 1)[-1] if proto.id else str(len(out))
        out[key] = proto.spec
    return out


def png_bytes(pattern: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray((pattern * 255).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def class_folder_zip(n_classes: int = 6, per_class: int = 8, size: int = 20, seed: int = 0,
                     extra: dict[str, bytes] | None = None) -> bytes:
    """A real zip of ``root/<class>/*.png``: each class a distinct bar pattern + noise."""
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for c in range(n_classes):
            base = np.zeros((size, size))
            base[:, (c * 3) % size:(c * 3) % size + 2] = 1.0
            base[(c * 5) % size, :] = 1.0
            for i in range(per_class):
                img = np.clip(base + 0.2 * rng.random((size, size)), 0, 1)
                zf.writestr(f"shapes/class_{c}/img_{i}.png", png_bytes(img))
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return buf.getvalue()


def strings(lang: str) -> dict:
    return json.loads((ROOT / "app" / "i18n" / f"{lang}.json").read_text(encoding="utf-8"))
