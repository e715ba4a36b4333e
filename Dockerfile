# pachca-bridge: builds the package and runs `pachca-bridge serve`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app

COPY pyproject.toml README.md ./
COPY bot ./bot
COPY bridge ./bridge
COPY store ./store
COPY handlers ./handlers
RUN pip install --no-cache-dir .

# The shipped config, listening on every interface inside the container; the SQLite file lives
# in /data (mount a volume there). Secrets come from BRIDGE_* environment variables.
COPY config.yaml /etc/pachca-bridge/config.yaml
ENV BRIDGE_CONFIG=/etc/pachca-bridge/config.yaml \
    BRIDGE_SERVER__HOST=0.0.0.0 \
    BRIDGE_DATABASE__URL=sqlite+aiosqlite:////data/bridge.db \
    BRIDGE_LOGGING__FORMAT=json
RUN useradd --system --home /data bridge && mkdir -p /data && chown bridge /data
USER bridge
VOLUME /data
EXPOSE 8080
STOPSIGNAL SIGTERM
CMD ["pachca-bridge", "serve"]
