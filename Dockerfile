# The validator's own image. The docker stage drives the host's engine: mount its socket
#   docker run --rm -v /var/run/docker.sock:/var/run/docker.sock -v "$PWD:/work" -w /work \
#     mlflow-validator validate models:/iris-classifier/3 --tracking-uri http://mlflow:5000
FROM python:3.11-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends docker.io bubblewrap \
    && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md /src/
COPY validator /src/validator
RUN python -m pip install --no-cache-dir /src && rm -rf /src
ENTRYPOINT ["mlflow-validator"]
