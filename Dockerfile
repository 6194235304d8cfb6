# syntax=docker/dockerfile:1
# The homelab-autoscaler operator image.
#
#   docker build -t ghcr.io/homecluster-dev/homelab-autoscaler:0.1.0 .
#
# Two stages: the first builds wheels for our package and its runtime dependencies only (no test
# extras). The second installs them from that local wheel directory, so the final image has no
# compiler, no build backend and no source tree. It runs as uid 65532 with a read-only root filesystem
# in mind: nothing is written outside /tmp at run time.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
# Packaging metadata first, so dependency wheels stay cached while only the code changes.
COPY setup.py setup.cfg README.md ./
COPY schemas/ schemas/
COPY actors/ actors/
COPY grpc_gateway/ grpc_gateway/
COPY protos/ protos/
COPY webhooks/ webhooks/
COPY sim/ sim/
COPY kubeapi/ kubeapi/
COPY homelab_autoscaler/ homelab_autoscaler/
COPY power_drivers/ power_drivers/
# All our runtime dependencies publish manylinux wheels, so this needs no compiler.
RUN python -m pip wheel --no-cache-dir --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
# A named user for the fixed uid: some libraries look the current user up by name.
RUN groupadd --system --gid 65532 nonroot \
    && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin nonroot
# Installed from the build stage's wheels through a bind mount, so the wheels never land in a layer. Then
# pip, setuptools and wheel are removed: nothing installs anything at run time.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m pip install --no-cache-dir --no-index --find-links=/wheels homelab-autoscaler \
    && python -m pip uninstall --yes pip setuptools wheel
# No .pyc files written at run time (the root filesystem is read-only); logs unbuffered for kubectl logs.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 65532:65532
WORKDIR /tmp
# gRPC for Cluster Autoscaler, metrics and health, admission webhook.
EXPOSE 50051 8080 9443
ENTRYPOINT ["homelab-autoscaler"]
CMD ["run"]
