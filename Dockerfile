# The sandcat server image: a static-ish release binary on a slim Debian base.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --bin sandcat

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/sandcat /usr/local/bin/sandcat
COPY sandcat.example.toml /etc/sandcat/sandcat.example.toml
ENV SANDCAT_LISTEN=0.0.0.0:8008 \
    SANDCAT_DATA_DIR=/var/lib/sandcat
VOLUME /var/lib/sandcat
EXPOSE 8008
ENTRYPOINT ["/usr/local/bin/sandcat"]
CMD ["serve"]
