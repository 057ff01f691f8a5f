# edx-engine in a container: slim Python + the real gpg binary; the entrypoint is the CLI.
#   docker build -t edx-engine .
#   docker run --rm -v edx-data:/data -v /etc/edx-engine:/etc/edx-engine:ro \
#     -e AWS_ACCESS_KEY_ID -e AWS_SECRET_ACCESS_KEY \
#     -e EDX_ENGINE_GPG_PASSPHRASE_FILE=/etc/edx-engine/gpg-passphrase \
#     edx-engine run --org IDBx --key-file /etc/edx-engine/org-private.asc   # sync + build + dashboard
#   docker run --rm -v edx-data:/data edx-engine status
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    EDX_ENGINE_DATA_DIR=/data

RUN apt-get update \
 && apt-get install -y --no-install-recommends gnupg ca-certificates tini \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/edx-engine
# Installs exactly the locked versions (with hashes), then the project itself without dependencies.
COPY pyproject.toml README.md requirements.lock ./
COPY src ./src
RUN pip install --require-hashes --no-deps -r requirements.lock \
 && pip install --no-deps --no-build-isolation . && pip check && rm -rf /root/.cache

# An unprivileged user; the data directory (store, ledger, private keyring) is a volume.
RUN useradd --system --uid 10001 --home-dir /data --no-create-home edx \
 && mkdir -p /data && chown edx:edx /data && chmod 0700 /data
USER edx
VOLUME ["/data"]

# tini reaps gpg/gpg-agent children and forwards SIGTERM (a stopped sync is recorded as interrupted
# and resumes at the next run). The default command is the whole daily job: sync, build, dashboard.
ENTRYPOINT ["/usr/bin/tini", "--", "edx-engine"]
CMD ["run"]
