# syntax=docker/dockerfile:1
# byok's image: one image for keyservice, proxyservice, migrations and byokctl; the command picks which.
#
#   docker build -t byok:0.1.0 .
#   docker run byok:0.1.0 python -m proxyservice
#
# Two stages: the builder installs the project into a virtualenv, the final stage gets only that
# virtualenv (interpreter, dependencies, byok's packages) on a clean base: no compilers, no build
# context, no pip cache. Both stages use the same base so the venv's interpreter symlinks resolve.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH
WORKDIR /src
# The build context is filtered by .dockerignore (no .git, .venv, tests or local state).
COPY . .
# A regular (non-editable) install: the code lands in the venv's site-packages, compiled to bytecode,
# so the final stage's read-only root filesystem never needs a write.
RUN pip install --no-cache-dir .

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="byok" \
      org.opencontainers.image.description="Bring-your-own-key for LLM providers: keyservice and proxyservice"
# A fixed numeric UID/GID that Kubernetes' runAsNonRoot can verify (the chart runs as 10001 too).
RUN groupadd --system --gid 10001 byok \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin byok \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/byok
COPY --from=builder /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /app
USER 10001:10001
# mTLS gRPC, plaintext gRPC health, Prometheus metrics.
EXPOSE 8443 8081 9090
# No HEALTHCHECK: Kubernetes probes the health port with its native gRPC probe.
CMD ["python", "-m", "keyservice"]
