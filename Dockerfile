# syntax=docker/dockerfile:1
# pricebot's ECS images, one target per role, from the project's wheel and uv.lock:
#
#   docker build --target job        -t <training repository>:<sha> .   # entrypoint `pricebot`:
#                                                 # db upgrade, bootstrap, train, score (infra/)
#   docker build --target monitoring -t <monitoring repository>:<sha> . # pricebot monitor
#
# The prediction service is not built here: it is a Bento (pricebot_service/bentofile.yaml,
# `bentoml build` + `bentoml containerize`, see .github/workflows/deploy.yml).
#
# Each image holds one virtual environment with exactly the locked versions of its role's
# extras (`uv export --frozen`, hashes checked), the wheel installed without dependencies, no
# dev extra, no build tools, no source tree, and runs as an unprivileged user.

ARG PYTHON_VERSION=3.11
ARG UV_VERSION=0.13.8

FROM ghcr.io/astral-sh/uv:${UV_VERSION} AS uv

# --- the wheel ----------------------------------------------------------------------------------
FROM python:${PYTHON_VERSION}-slim-bookworm AS wheel
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_NO_CACHE=1 UV_PYTHON_DOWNLOADS=never
WORKDIR /src
COPY pyproject.toml uv.lock README.md ./
COPY src/pricebot ./src/pricebot
COPY pricebot_cli ./pricebot_cli
COPY pricebot_exchange ./pricebot_exchange
COPY pricebot_local ./pricebot_local
COPY pricebot_monitor ./pricebot_monitor
COPY pricebot_service ./pricebot_service
COPY pricebot_training ./pricebot_training
RUN uv build --wheel --out-dir /dist

# --- one environment per role -------------------------------------------------------------------
FROM python:${PYTHON_VERSION}-slim-bookworm AS environment
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_NO_CACHE=1 UV_PYTHON_DOWNLOADS=never UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy
WORKDIR /src
COPY pyproject.toml uv.lock README.md ./
RUN uv venv /opt/venv

FROM environment AS job-environment
RUN uv export --frozen --no-dev --no-emit-project --extra train --extra aws -o requirements.txt \
    && uv pip install --python /opt/venv/bin/python --require-hashes -r requirements.txt
COPY --from=wheel /dist /dist
RUN uv pip install --python /opt/venv/bin/python --no-deps /dist/pricebot-*.whl

FROM environment AS monitoring-environment
RUN uv export --frozen --no-dev --no-emit-project --extra monitor --extra aws -o requirements.txt \
    && uv pip install --python /opt/venv/bin/python --require-hashes -r requirements.txt
COPY --from=wheel /dist /dist
RUN uv pip install --python /opt/venv/bin/python --no-deps /dist/pricebot-*.whl

# --- what runs ----------------------------------------------------------------------------------
FROM python:${PYTHON_VERSION}-slim-bookworm AS runtime
RUN groupadd --system --gid 10001 pricebot \
    && useradd --system --uid 10001 --gid pricebot --create-home --home-dir /home/pricebot pricebot
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false
WORKDIR /home/pricebot

FROM runtime AS job
COPY --from=job-environment /opt/venv /opt/venv
USER 10001:10001
ENTRYPOINT ["pricebot"]
CMD ["--help"]

FROM runtime AS monitoring
COPY --from=monitoring-environment /opt/venv /opt/venv
USER 10001:10001
ENV STREAMLIT_BROWSER_GATHER_USAGE_STATS=false STREAMLIT_SERVER_HEADLESS=true
EXPOSE 8501
ENTRYPOINT ["pricebot"]
CMD ["monitor", "--host", "0.0.0.0"]
