"""The run store: what a session makes, kept in a real database so it outlives a reload.

Why in the core (``metarep_core.store``) and not in ``app/``: it must run without
Streamlit — in tests, in the CLI, and in the training workers that will write their
checkpoints straight into it (issue 14) — and the core never imports Streamlit.

Through SQLAlchemy 2 Core: a SQLite file by default (``runs.sqlite3`` in the app's
cache directory), PostgreSQL when ``METAREP_DB_URL`` names one, so that several app
servers share it (:mod:`.engine`). The tables and their versioning are in
:mod:`.schema`; runs, blobs and answers in :mod:`.runs`; kept comparisons in
:mod:`.results`; classes in :mod:`.classes`.
Limits are in :mod:`metarep_core.limits` (``STORE_*``, ``CHECKPOINT_MAX_BYTES``).

    store = RunStore()                       # or RunStore("postgresql://...")
    token = store.create_run()               # the ?run= of a link
    store.save_settings(token, {"dataset": "glyphs", ...})
    store.save_page_state(token, "adaptation", {"step": 3})
    store.put_checkpoint(token, slot, checkpoint_bytes)
    learner, meta = store.get_checkpoint(token, slot, algorithm=..., n_way=..., input_shape=..., task=...)
    code, key = store.create_class()
    student = store.join_class(code, "Ada")
    store.put_comparison(token, "compare", record); store.get_comparison(token, "compare")
    store.record_answer(student, "inner_loop", 2, "higher", correct=True, seconds=12.5)
    store.class_answers(code, key); store.export_csv(code, key)
    store.set_revealed(code, key, "inner_loop", 2); store.answer_summary(code, "inner_loop", 2)
"""
from __future__ import annotations

from .classes import AnswerSummary, ClassAnswer, ClassroomMixin
from .engine import ENV_URL, database_url, store_dir
from .results import ResultsMixin, check_comparison
from .runs import AnswerRecord, BlobInfo, Run, RunStoreBase, StoredDataset
from .schema import SCHEMA_VERSION


class RunStore(ResultsMixin, ClassroomMixin, RunStoreBase):
    """Runs (:class:`RunStoreBase`), their kept comparisons (:class:`ResultsMixin`) and
    classes (:class:`ClassroomMixin`) in one store."""


__all__ = ["RunStore", "Run", "BlobInfo", "StoredDataset", "AnswerRecord", "ClassAnswer", "AnswerSummary",
           "check_comparison", "SCHEMA_VERSION", "ENV_URL", "database_url", "store_dir"]
