# georeg: the command line, for running management commands from a
# container (`docker run --rm -v DIR:/work georeg/georeg:dev replication list
# --dir /work`). Built like regiond.Dockerfile. It serves nothing, so it has
# no health check.
FROM scratch
COPY rootfs/ /
COPY --chown=65532:65532 empty/ /home/georeg/
COPY georeg /usr/local/bin/georeg
USER 65532:65532
HEALTHCHECK NONE
ENTRYPOINT ["/usr/local/bin/georeg"]
