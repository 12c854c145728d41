"""MetaRep Explorer's Streamlit front end (entry: app/main.py)."""
