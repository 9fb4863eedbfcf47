# The image `sam local invoke --invoke-image` runs provided.al2023 functions
# in, built on this machine because it cannot pull one (source it; it
# defines ensure_invoke_image):
#
#   ensure_invoke_image  -> INVOKE_IMAGE (built once, then reused)
#
# A Debian 12 minbase root filesystem (debootstrap, .debs from Debian's
# mirror) loaded with `docker import`. What SAM and the function need from it:
#   - /bin/sh, mv, chmod: SAM derives its own image from this one with
#     `ADD aws-lambda-rie /var/rapid/` and `RUN mv ... && chmod +x ...`;
#   - glibc: the bootstrap binaries are dynamically linked (libc, libm,
#     libpthread, libdl); cargo-lambda/zig links them against an old glibc
#     (symbols up to GLIBC_2.30), and bookworm has 2.36;
#   - /var/task: SAM mounts the built function there; the runtime emulator
#     (SAM's own aws-lambda-rie, the entrypoint) runs /var/task/bootstrap.
#   - CA certificates (ca-certificates): the functions' HTTP clients load the
#     system's root certificates when they start and refuse to start without
#     any ("no native root CA certificates found", then InvalidEndpoint),
#     even though here they only talk plain HTTP to loopback. Lambda's
#     provided.al2023 image has them too.
# The recipe version is a label: change RECIPE and the image is rebuilt.

INVOKE_IMAGE="${INVOKE_IMAGE:-ecr-bridge/lambda-provided:bookworm}"
INVOKE_IMAGE_RECIPE=2
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

ensure_invoke_image() {
    local have old
    have=$(docker image inspect --format '{{ index .Config.Labels "org.ecr-bridge.recipe" }}' "$INVOKE_IMAGE" 2>/dev/null) || have=""
    old=$(docker image inspect --format '{{.Id}}' "$INVOKE_IMAGE" 2>/dev/null) || old=""
    if [ "$have" = "$INVOKE_IMAGE_RECIPE" ]; then
        INVOKE_IMAGE_BUILT=0
        return 0
    fi
    command -v debootstrap >/dev/null ||
        fail "debootstrap missing (apt-get install -y debootstrap; scripts/setup.sh should install it)"
    [ "$(id -u)" -eq 0 ] || fail "building $INVOKE_IMAGE needs root (debootstrap chroots and creates device nodes)"

    local root="$WORK/rootfs"
    log "building $INVOKE_IMAGE: debootstrap --variant=minbase --include=ca-certificates bookworm"
    debootstrap --variant=minbase --include=ca-certificates bookworm "$root" "$DEBIAN_MIRROR" >"$WORK/debootstrap.log" 2>&1 || {
        tail -20 "$WORK/debootstrap.log" >&2
        fail "debootstrap failed (log above)"
    }
    # Nothing a function reads: documentation, locales, apt's caches and lists.
    rm -rf "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
        "$root"/usr/share/locale/* "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/* \
        "$root"/var/log/*.log "$root"/var/log/apt/*
    mkdir -p "$root/var/task" "$root/var/runtime" "$root/var/rapid" "$root/opt"
    tar --numeric-owner -C "$root" -c . | docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'WORKDIR /var/task' \
        --change "LABEL org.ecr-bridge.recipe=$INVOKE_IMAGE_RECIPE" \
        --message "debootstrap --variant=minbase --include=ca-certificates bookworm; recipe $INVOKE_IMAGE_RECIPE" \
        - "$INVOKE_IMAGE" >/dev/null || fail "docker import of the root filesystem failed"
    rm -rf "$root"
    # The previous recipe's image, now untagged (unless something still uses it).
    [ -z "$old" ] || docker image rm "$old" >/dev/null 2>&1 || true
    INVOKE_IMAGE_BUILT=1
}
