# The validator's own image: the CLI with its locked dependencies (uv among them) and a docker CLI that
# drives the engine whose socket is mounted. It runs as a user of its own; the socket's group lets it in:
#   docker run --rm -v /var/run/docker.sock:/var/run/docker.sock \
#     --group-add "$(stat -c %g /var/run/docker.sock)" -v "$PWD:/work" \
#     mlflow-validator validate models:/iris-classifier/3 --tracking-uri http://mlflow:5000
# Build it with BuildKit. Behind a TLS-intercepting proxy, give the build the proxy's CA as a secret
# (it reaches no layer):  DOCKER_BUILDKIT=1 docker build --secret id=ca,src=/path/to/ca.pem -t mlflow-validator .
# Debian 13 (trixie), by name, as python:3.11-slim is today: its docker CLI and buildx plugin are packages
# of their own, and the CLI builds with BuildKit through the plugin. No daemon: the engine is the job's.
ARG PYTHON_IMAGE=python:3.11-slim-trixie
FROM ${PYTHON_IMAGE}

RUN apt-get update \
    && apt-get install -y --no-install-recommends docker-cli docker-buildx bubblewrap \
    && rm -rf /var/lib/apt/lists/*

COPY requirements.lock /tmp/requirements.lock
RUN --mount=type=secret,id=ca \
    if [ -f /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi \
    && python -m pip install --no-cache-dir --no-deps --require-hashes -r /tmp/requirements.lock \
    && rm /tmp/requirements.lock

COPY pyproject.toml README.md /src/
COPY mlflow_validator /src/mlflow_validator
RUN --mount=type=secret,id=ca \
    if [ -f /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi \
    && python -m pip install --no-cache-dir --no-deps /src \
    && rm -rf /src

RUN useradd --create-home --uid 10001 validator
USER validator
WORKDIR /work
ENTRYPOINT ["mlflow-validator"]
