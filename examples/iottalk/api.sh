#!/bin/sh
# The reference's api.sh against perch: graph 1 of the account links BetaCat's input feature
# meow through int(x) and a join x ** 2 to its output feature meow.
ACCOUNT=${PERCH_ACCOUNT:-A}
TOPIC="/$ACCOUNT/graph/1"
DA_ID='df682f01-7c3a-49fd-8f5f-72ce0b6e68c0'

IDF_FUNC='function run(x) { return Math.trunc(Number(x)) }'
IDF_FUNC_SIG=$(printf '%s' "$IDF_FUNC" | sha256sum | cut -d' ' -f1)

JOIN_FUNC='function run(x) { return x ** 2 }'
JOIN_FUNC_SIG=$(printf '%s' "$JOIN_FUNC" | sha256sum | cut -d' ' -f1)

pub() {
  mosquitto_pub -h "${PERCH_HOST:-localhost}" -p "${PERCH_PORT:-1883}" -u "$ACCOUNT" -P "$PERCH_PASSWORD" -q 1 -t "$TOPIC" -m "$1"
}

pub '{"op": "attach"}'

pub '{"op": "add_funcs", "codes": ["'"$IDF_FUNC"'", "'"$JOIN_FUNC"'"], "digests": ["'"$IDF_FUNC_SIG"'", "'"$JOIN_FUNC_SIG"'"]}'

pub '{"op": "add_link", "da_id": "'$DA_ID'", "idf": "meow", "func": "'$IDF_FUNC_SIG'"}'

pub '{"op": "add_link", "da_id": "'$DA_ID'", "odf": "meow", "func": null}'

pub '{"op": "set_join", "prev": null, "new": "'$JOIN_FUNC_SIG'"}'
