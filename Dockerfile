# The sandcat server. Build: docker build -t sandcat .
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin sandcat

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/sandcat /usr/local/bin/sandcat
COPY sandcat.example.toml /etc/sandcat/sandcat.example.toml
ENV SANDCAT_LISTEN=0.0.0.0:8008 \
    SANDCAT_DATA_DIR=/data
VOLUME /data
EXPOSE 8008
HEALTHCHECK --interval=5s --timeout=3s --retries=20 CMD curl -fsS http://127.0.0.1:8008/health || exit 1
ENTRYPOINT ["sandcat"]
CMD ["serve"]
