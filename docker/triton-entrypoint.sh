#!/bin/sh
# Runs the given tritonserver command; on SIGTERM (or SIGINT) first drains, then stops it.
#
# tritonserver 2.51's own shutdown drops a BLS video in flight (its calls to the parts are refused once the
# server stops), so the stop goes through `i2v drain` first: the BLS refuses new requests (retryably) and the
# ones in flight finish, for up to I2V_DRAIN_TIMEOUT seconds (300: within compose's stop_grace_period and
# Kubernetes' terminationGracePeriodSeconds of 330). docker-compose.yml and the Kubernetes Deployment use it as
# the Triton container's entrypoint; tests/test_recovery.py runs it around a real tritonserver.
set -u
"$@" &
server=$!
trap 'i2v drain --timeout "${I2V_DRAIN_TIMEOUT:-300}" --metrics-url "${I2V_METRICS_URL:-http://localhost:8002/metrics}"; kill -TERM "$server"' TERM INT
status=0
while kill -0 "$server" 2>/dev/null; do
  wait "$server"
  status=$?
done
exit "$status"
