"""MetaRep Explorer core: datasets, episodes, meta-learners, training, evaluation.

The core never imports Streamlit; the app (``app/``) is a thin layer over it.
"""
__version__ = "0.1.0"
