#!/bin/sh
#
# canary-entrypoint: writes the example configuration from the environment,
# checks it with `nginx -t`, then runs the command (nginx -g 'daemon off;').
#
#   CANARY_REDIS       host:port, [ipv6]:port or unix:/path of Redis
#                      (required; the rollout state lives there)
#   CANARY_STABLE      host:port of the stable servers  [demo backend]
#   CANARY_CANARY      host:port of the canary servers  [demo backend]
#   CANARY_PERCENT     percent until Redis says otherwise  [0]
#   CANARY_LISTEN      [80]
#   CANARY_ROLLOUT     the rollout's name (its Redis key
#                      canary:rollout:NAME)  [app]
#
# For running outside a container (the test suite does):
#   CANARY_CONF_DIR    where conf.d/canary.conf is written  [/etc/nginx]
#   CANARY_TEMPLATE    [/etc/nginx/templates/canary.conf.template]
#   CANARY_RUN_DIR     the demo backends' sockets  [/run/nginx-canary]
#   CANARY_STATE_FILE  [/var/lib/nginx/canary.state]
#   CANARY_NGINX_ARGS  extra arguments for `nginx -t`, e.g. -p and -c
#
# Every value is checked against a strict pattern before it reaches the
# configuration: a bad one stops the container with a message naming it.

set -eu

die() {
    echo "canary-entrypoint: $*" >&2
    exit 64
}

CONF_DIR=${CANARY_CONF_DIR:-/etc/nginx}
TEMPLATE=${CANARY_TEMPLATE:-/etc/nginx/templates/canary.conf.template}
RUN_DIR=${CANARY_RUN_DIR:-/run/nginx-canary}
STATE_FILE=${CANARY_STATE_FILE:-/var/lib/nginx/canary.state}
PERCENT=${CANARY_PERCENT:-0}
LISTEN=${CANARY_LISTEN:-80}
ROLLOUT=${CANARY_ROLLOUT:-app}
STABLE=${CANARY_STABLE:-unix:$RUN_DIR/stable.sock}
CANARY=${CANARY_CANARY:-unix:$RUN_DIR/canary.sock}

[ -n "${CANARY_REDIS:-}" ] \
    || die "set CANARY_REDIS=host:port (or unix:/path) of your Redis," \
           "e.g. docker run -e CANARY_REDIS=redis:6379 ..."

# value, name, extended regex
check() {
    printf '%s' "$1" | grep -Eqx "$3" \
        || die "$2=\"$1\" is not valid (expected: $4)"
}

addr='([A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\]):[0-9]{1,5}'
path='unix:/[A-Za-z0-9._/-]+'

check "$CANARY_REDIS" CANARY_REDIS "$addr|$path" "host:port or unix:/path"
check "$STABLE" CANARY_STABLE "$addr|$path" "host:port or unix:/path"
check "$CANARY" CANARY_CANARY "$addr|$path" "host:port or unix:/path"
check "$PERCENT" CANARY_PERCENT \
      '(100(\.0{1,2})?|[0-9]{1,2}(\.[0-9]{1,2})?)' "0..100, two decimals"
check "$LISTEN" CANARY_LISTEN "[0-9]{1,5}|$addr" "port or address:port"
check "$ROLLOUT" CANARY_ROLLOUT '[A-Za-z0-9_.-]{1,64}' \
      "letters, digits, _ . -"
check "$RUN_DIR" CANARY_RUN_DIR '/[A-Za-z0-9._/-]+' "an absolute path"
check "$STATE_FILE" CANARY_STATE_FILE '/[A-Za-z0-9._/-]+' "an absolute path"

[ -f "$TEMPLATE" ] || die "no template at $TEMPLATE"

mkdir -p "$CONF_DIR/conf.d" "$RUN_DIR" "$(dirname "$STATE_FILE")"
rm -f "$RUN_DIR/stable.sock" "$RUN_DIR/canary.sock"

sed -e "s|@CANARY_REDIS@|$CANARY_REDIS|g" \
    -e "s|@CANARY_STABLE@|$STABLE|g" \
    -e "s|@CANARY_CANARY@|$CANARY|g" \
    -e "s|@CANARY_PERCENT@|$PERCENT|g" \
    -e "s|@CANARY_LISTEN@|$LISTEN|g" \
    -e "s|@CANARY_ROLLOUT@|$ROLLOUT|g" \
    -e "s|@CANARY_RUN_DIR@|$RUN_DIR|g" \
    -e "s|@CANARY_STATE_FILE@|$STATE_FILE|g" \
    "$TEMPLATE" > "$CONF_DIR/conf.d/canary.conf.new"

if grep -q '@CANARY_[A-Z_]*@' "$CONF_DIR/conf.d/canary.conf.new"; then
    die "unsubstituted placeholders in $TEMPLATE"
fi
mv "$CONF_DIR/conf.d/canary.conf.new" "$CONF_DIR/conf.d/canary.conf"

# workers (www-data) keep the state file there
chown www-data "$(dirname "$STATE_FILE")" 2>/dev/null || true

# shellcheck disable=SC2086
nginx -q -t ${CANARY_NGINX_ARGS:-} \
    || die "nginx -t refused $CONF_DIR/conf.d/canary.conf"

exec "$@"
