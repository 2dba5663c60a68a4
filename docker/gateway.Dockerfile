# The API gateway in front of Triton: Debian 12's nginx with its JavaScript module (njs), the packages the tests
# run (gateway/nginx_server.py), so the module is where the rendered `load_module` looks
# (i2v.gateway.nginx_config.JS_MODULE), and Debian's mtail, which the same image runs beside nginx for the
# per-tenant metrics (gateway/tenant_metrics.mtail). No Python here: `i2v gateway render` (the serving image, a
# one-shot service in compose, an init container in Kubernetes) writes nginx.conf, tenant_key.js and
# tenant_metrics.mtail into /etc/i2v-gateway.
FROM debian:12.8-slim

RUN apt-get update \
    && apt-get install -y --no-install-recommends nginx libnginx-mod-http-js mtail curl ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# SIGQUIT is nginx's graceful stop: the generations streaming through it finish (within the grace period).
STOPSIGNAL SIGQUIT
# /tmp/i2v-gateway is the rendered configuration's temp_dir (request bodies); errors go to stderr, requests (one
# JSON line each, with the tenant) to stdout.
CMD ["sh", "-c", \
     "mkdir -p /tmp/i2v-gateway && exec nginx -e stderr -p /etc/i2v-gateway -c /etc/i2v-gateway/nginx.conf -g 'daemon off;'"]
