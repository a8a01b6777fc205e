# hunt-runner: the daemon in a container.
#   docker build -t hunt-runner .
#   docker run -d --name hunt-runner \
#     -v "$PWD/config:/etc/hunt-runner/config:ro" \
#     -v "$PWD/jobs:/etc/hunt-runner/jobs:ro" \
#     -v hunt-runner-state:/var/lib/hunt-runner \
#     -e CONTOSO_HUNTING_SECRET --stop-timeout 300 hunt-runner
# (the secret's variable is whatever the tenant's secret_env names)
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY runner ./runner
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HUNT_RUNNER_CONFIG=/etc/hunt-runner/config \
    HUNT_RUNNER_JOBS=/etc/hunt-runner/jobs
COPY --from=build /install /usr/local
RUN groupadd --system --gid 10001 hunt \
    && useradd --system --uid 10001 --gid hunt --home-dir /var/lib/hunt-runner \
       --shell /usr/sbin/nologin hunt \
    && mkdir -p /etc/hunt-runner/config /etc/hunt-runner/jobs /var/lib/hunt-runner \
    && chown -R hunt:hunt /var/lib/hunt-runner
COPY --chown=root:root config /etc/hunt-runner/config
COPY --chown=root:root jobs /etc/hunt-runner/jobs
# The working directory is the state volume: the shipped configuration writes
# state/ and out/ relative to it.
WORKDIR /var/lib/hunt-runner
VOLUME ["/var/lib/hunt-runner"]
USER hunt
# Exit code 0 while the state file is readable and the daemon has written its
# status within the last two minutes.
HEALTHCHECK --interval=60s --timeout=15s --start-period=120s --retries=3 \
    CMD ["hunt-runner", "health", "--max-age", "120"]
# Exec form: hunt-runner is PID 1 and receives SIGTERM itself; it installs its
# own handler (PID 1 gets no default one), finishes in-flight runs, exits 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["hunt-runner"]
CMD ["run"]
