"""The floor under every click (benchmarks/app_latency.py --only empty): a Streamlit page
with one button and one line of text, served the same way as the app. Its rerun round
trip is what Streamlit itself costs on this machine, whatever the app does."""
import streamlit as st

st.session_state["runs"] = st.session_state.get("runs", 0) + 1
st.button("Rerun", key="again")
st.write(f"run {st.session_state['runs']}")
