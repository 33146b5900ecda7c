# syntax=docker/dockerfile:1
# Build: deploy/docker-build.sh (or docker build --build-arg VERSION=1.2.3 -t feedgate .)
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/gateway ./cmd/gateway \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
LABEL org.opencontainers.image.title="feedgate" \
      org.opencontainers.image.description="A real-time feed gateway" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /out/gateway /gateway
COPY --from=build --chown=65532:65532 /out/data /data
COPY LICENSE /LICENSE
USER 65532:65532
ENV FEEDGATE_LISTEN=:8080 FEEDGATE_DATA_DIR=/data
EXPOSE 8080
VOLUME ["/data"]
HEALTHCHECK --interval=10s --timeout=5s --start-period=5s --retries=3 CMD ["/gateway", "health"]
ENTRYPOINT ["/gateway"]
CMD ["serve"]
