# otel-benchlab agent image: one agent per node (helm/otel-benchlab) or per workstation.
#   docker build -t otel-benchlab .
#   docker run --rm otel-benchlab --simulate --duration 10
# Stage 1 builds the wheel; stage 2 installs only the wheel and its dependencies.
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY otel_benchlab ./otel_benchlab
COPY receivers ./receivers
COPY processors ./processors
COPY exporters ./exporters
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:${PYTHON_VERSION}-slim-bookworm
# GStreamer's tools for `otel-benchlab gst` (the latency tracer runs in gst-launch-1.0).
RUN apt-get update \
 && apt-get install -y --no-install-recommends gstreamer1.0-tools \
        gstreamer1.0-plugins-base gstreamer1.0-plugins-good \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
# The chart runs it as this user with a read-only root filesystem; data goes to the volume.
RUN useradd --system --uid 10001 --gid 0 --home-dir /var/lib/otel-benchlab otel-benchlab \
 && mkdir -p /var/lib/otel-benchlab && chown 10001:0 /var/lib/otel-benchlab
ENV BENCHLAB_DATA_ROOT=/var/lib/otel-benchlab \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001
VOLUME ["/var/lib/otel-benchlab"]
# Prometheus /metrics, OTLP intake (gRPC, HTTP), probe datagrams
EXPOSE 9109 4317 4318 4797/udp
ENTRYPOINT ["otel-benchlab"]
CMD ["run"]
