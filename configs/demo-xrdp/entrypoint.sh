#!/bin/sh
# Entrypoint of the demo RDP host (configs/demo-xrdp/Dockerfile): sets the demo user's password,
# makes this container's own TLS certificate and RSA keys, starts the session manager and then
# runs the command, `xrdp --nodaemon`, in the foreground.
set -eu

if [ -z "${DEMO_XRDP_PASSWORD:-}" ]; then
    echo "demo-xrdp: DEMO_XRDP_PASSWORD is empty: set the demo user's RDP password in .env.secrets" >&2
    exit 1
fi
printf 'demo:%s\n' "$DEMO_XRDP_PASSWORD" | chpasswd
unset DEMO_XRDP_PASSWORD

# Keys made when the image was built would be shared by every container of the image.
make-ssl-cert generate-default-snakeoil --force-overwrite
xrdp-keygen xrdp auto >/dev/null

# What the xrdp systemd unit does before starting (runtime and socket directories); a pid file left
# by a previous run of this container would make xrdp and xrdp-sesman refuse to start.
sh /usr/share/xrdp/socksetup
rm -f /run/xrdp/xrdp.pid /run/xrdp/xrdp-sesman.pid

xrdp-sesman --nodaemon &
exec "$@"
