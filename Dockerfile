# pachca-bridge: builds the package and runs `pachca-bridge serve` (docs/operations.md, Docker).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app

# Every package of the distribution (pyproject.toml, packages.find), with its data files: the
# web client's page and assets, the sandbox's spec and page, the migrations.
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY bridge ./bridge
COPY store ./store
COPY handlers ./handlers
COPY web ./web
COPY sandbox ./sandbox
RUN pip install --no-cache-dir . && rm -rf /app/*

# The shipped config, listening on every interface inside the container. The SQLite file, and
# anything else given as a relative path, lives in /data: the working directory, a volume the
# service's user owns (a named volume starts with that ownership; chown a bind mount's
# directory to uid 999). Secrets come from BRIDGE_* environment variables.
COPY config.yaml /etc/pachca-bridge/config.yaml
# Docker waits 10 s after SIGTERM before it kills (`docker stop`): the graceful stop must end
# before that. Raising shutdown_timeout_s? Raise the grace with it: `docker run
# --stop-timeout 40`, or compose's `stop_grace_period: 40s`.
ENV BRIDGE_CONFIG=/etc/pachca-bridge/config.yaml \
    BRIDGE_SERVER__HOST=0.0.0.0 \
    BRIDGE_SERVER__SHUTDOWN_TIMEOUT_S=8 \
    BRIDGE_DATABASE__URL=sqlite+aiosqlite:////data/bridge.db \
    BRIDGE_LOGGING__FORMAT=json
RUN useradd --system --uid 999 --home-dir /data bridge && mkdir -p /data && chown bridge /data
USER bridge
WORKDIR /data
VOLUME /data
EXPOSE 8080
STOPSIGNAL SIGTERM
# Ready: the database answers and its schema is current (on the port the service was given).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('BRIDGE_SERVER__PORT', '8080'), timeout=4)"]
CMD ["pachca-bridge", "serve"]
