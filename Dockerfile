# MetaRep Explorer: the Streamlit app on 0.0.0.0:8501, CPU only.
#   docker build -t metarep-explorer .
#   docker run --rm -p 8501:8501 metarep-explorer      # then open http://localhost:8501
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The app runs as an unprivileged user; its caches (generated datasets, and UMAP's compiled
# numba code in $METAREP_CACHE/numba) live in that user's home.
RUN useradd --create-home --uid 1000 --shell /usr/sbin/nologin metarep
ENV HOME=/home/metarep \
    METAREP_CACHE=/home/metarep/.cache/metarep_explorer

WORKDIR /app

# Dependencies first, so editing the code does not reinstall them. PyPI's default torch
# wheel pulls multi-GB CUDA libraries: take the CPU build of the same pinned version from
# PyTorch's CPU index, then the pinned requirements.txt (which the 2.13.0+cpu wheel satisfies).
COPY requirements.txt ./
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
 && pip install -r requirements.txt

COPY --chown=metarep:metarep . .

USER metarep

# Fill those caches in the image (the default glyphs, UMAP compiled), so a new container's
# first page and first UMAP do not pay for them.
RUN python -c "from metarep_core.data import load_dataset; from metarep_core import projection; load_dataset('glyphs'); projection.warm_up()"

EXPOSE 8501

HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://localhost:8501/_stcore/health', timeout=4).status == 200 else 1)"]

CMD ["python", "-m", "app.serve", "run", "app/main.py", \
     "--server.address", "0.0.0.0", "--server.port", "8501", \
     "--server.headless", "true", "--browser.gatherUsageStats", "false"]
