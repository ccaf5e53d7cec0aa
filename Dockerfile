# durable-streamsd: the daemon in a small image, run as a non-root user.
#
#   docker build -t durable-streamsd .
#   docker run -d --name ds -p 4437:4437 -v ds-data:/var/lib/ds --stop-timeout 30 durable-streamsd
#
# Every option is also a DS_* variable (docker run -e DS_FSYNC=interval ...).

# ---- build: a wheel of the package and of every dependency.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# mypyc compiles the request path to C (setup.py); the compiler stays here.
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# .dockerignore lets in only what the package build needs.
COPY . .
RUN pip wheel --wheel-dir /wheels .

# ---- runtime: installed from those wheels only, nothing from the build left.
FROM python:3.11-slim
# DS_SHUTDOWN_GRACE: in-flight requests get 8 s after SIGTERM, inside Docker's
# default 10 s stop timeout. Raise both together (docker run --stop-timeout,
# compose stop_grace_period, k8s terminationGracePeriodSeconds), keeping the
# grace a few seconds shorter.
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    DS_LOG_FORMAT=json \
    DS_SHUTDOWN_GRACE=8
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links /wheels durable-streamsd \
 && groupadd --system --gid 10001 ds \
 && useradd --system --uid 10001 --gid ds --home-dir /var/lib/ds --no-create-home --shell /usr/sbin/nologin ds \
 && mkdir -p /var/lib/ds \
 && chown ds:ds /var/lib/ds \
 && chmod 0700 /var/lib/ds

# Numeric, so orchestrators can check runAsNonRoot.
USER 10001:10001
WORKDIR /var/lib/ds
VOLUME ["/var/lib/ds"]
EXPOSE 4437

# SIGTERM drains and stops (SIGKILL only after the stop timeout).
STOPSIGNAL SIGTERM

# Alive = the event loop answers HTTP. HEAD on a path under the protocol's
# reserved __ds prefix is answered 404 without looking anything up or
# creating anything; any answer below 500 counts as healthy.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import http.client, os, sys; c = http.client.HTTPConnection('127.0.0.1', int(os.environ.get('DS_PORT', '4437')), timeout=4); c.request('HEAD', '/__ds/healthcheck'); sys.exit(0 if c.getresponse().status < 500 else 1)"]

CMD ["durable-streamsd", "serve", "--data-dir", "/var/lib/ds", "--host", "0.0.0.0"]
