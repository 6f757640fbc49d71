# One image for every process of okta-onprem-bridge: the four services (queue_poller, translator, scim_dispatcher,
# audit_recorder) and the two dev fixtures (okta_simulator, demo_scim_target). Each compose service (or pod)
# chooses its process with `command`; the default below runs the audit recorder.
#
#   docker build -t okta-onprem-bridge:dev .
#   docker run --rm okta-onprem-bridge:dev python -m queue_poller

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Only what `pip install .` needs (see .dockerignore): no tests, no secrets, no local virtualenvs.
COPY pyproject.toml ./
COPY shared ./shared
COPY services ./services
RUN python -m venv /opt/bridge \
 && /opt/bridge/bin/pip install . \
 && /opt/bridge/bin/python -c "import okta_bridge, queue_poller, translator, scim_dispatcher, audit_recorder, okta_simulator, demo_scim_target"

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="okta-onprem-bridge" \
      org.opencontainers.image.description="Okta System Log -> on-prem SCIM 1.1/2.0 provisioning bridge" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 bridge \
 && useradd --system --uid 10001 --gid bridge --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin bridge
COPY --from=build /opt/bridge /opt/bridge
COPY deploy/bridge-entrypoint.py /usr/local/bin/bridge-entrypoint.py
ENV PATH=/opt/bridge/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CONNECTORS_FILE=/etc/okta-bridge/connectors.yaml \
    AUDIT_HOST=0.0.0.0 \
    AUDIT_PORT=8070
WORKDIR /app
USER 10001:10001
EXPOSE 8070
# Turns files in /run/secrets named like env vars (OKTA_API_TOKEN, RABBITMQ_URL, DEMO_TARGET_TOKEN, ...) into
# environment variables, then execs the command.
ENTRYPOINT ["python", "/usr/local/bin/bridge-entrypoint.py"]
CMD ["python", "-m", "audit_recorder"]
