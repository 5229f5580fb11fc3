# headrace: one image for every role (serve, ingest, deliver). Runs as a non-root user with its
# data directory on a volume; the health check asks /healthz on HEADRACE_HEALTH_PORT (8080 for
# serve and ingest, 8081 for deliver's metrics port). See docs/deploy.md.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/headrace --create-home headrace

WORKDIR /opt/headrace
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install ".[aws]" && rm -rf /opt/headrace/src /opt/headrace/build

USER headrace
WORKDIR /var/lib/headrace
ENV HEADRACE_DATA_DIR=/var/lib/headrace/data \
    HEADRACE_CONFIG=/etc/headrace/pipeline.yaml \
    HEADRACE_HEALTH_PORT=8080
VOLUME ["/var/lib/headrace/data"]
EXPOSE 8080 8081

HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ['HEADRACE_HEALTH_PORT'], timeout=2)"]

ENTRYPOINT ["headrace"]
CMD ["serve", "--host", "0.0.0.0"]
