# regiond: one zone node. `make images` builds it offline: no base image (FROM
# scratch, nothing to pull), the static binary (CGO_ENABLED=0), a passwd entry
# for the unprivileged user, and empty, user-owned folders for the data volume
# (/var/lib/georeg) and the credentials `georeg cluster up` copies in
# (/etc/georeg). There is no shell: the health check is the binary itself.
FROM scratch
COPY rootfs/ /
COPY --chown=65532:65532 empty/ /home/georeg/
COPY --chown=65532:65532 empty/ /var/lib/georeg/
COPY --chown=65532:65532 empty/ /etc/georeg/
COPY regiond /usr/local/bin/regiond
USER 65532:65532
VOLUME /var/lib/georeg
EXPOSE 5000 5100 5200 5300 5300/udp
# The URL and CA come from GEOREG_HEALTH_URL and GEOREG_HEALTH_CA, set per
# container (a node listens on its own address, not on 127.0.0.1).
# Every 5 s, not faster: each check starts a process in the container
# (runc exec), which costs the host more than the probe itself.
HEALTHCHECK --interval=5s --timeout=10s --start-period=120s --retries=3 CMD ["/usr/local/bin/regiond", "--health-check"]
ENTRYPOINT ["/usr/local/bin/regiond"]
