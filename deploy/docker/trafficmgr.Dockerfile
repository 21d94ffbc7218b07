# trafficmgr: the endpoint. Built like regiond.Dockerfile: FROM scratch, the
# static binary, an unprivileged user, the binary as its own health check.
FROM scratch
COPY rootfs/ /
COPY --chown=65532:65532 empty/ /home/georeg/
COPY --chown=65532:65532 empty/ /var/lib/georeg/
COPY --chown=65532:65532 empty/ /etc/georeg/
COPY trafficmgr /usr/local/bin/trafficmgr
USER 65532:65532
EXPOSE 5000 5001 5002
# Every 5 s, not faster: each check starts a process in the container
# (runc exec), which costs the host more than the probe itself.
HEALTHCHECK --interval=5s --timeout=10s --start-period=60s --retries=3 CMD ["/usr/local/bin/trafficmgr", "--health-check"]
ENTRYPOINT ["/usr/local/bin/trafficmgr"]
