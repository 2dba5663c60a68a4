"""The API gateway in front of Triton: nginx with per-tenant keys, rate limits, TLS and HTTP access.

tenants.py reads and writes the tenants file (key hashes, limits, models), nginx_config.py renders nginx's
configuration from it (the template and the key-hashing script ship beside it), nginx_server.py runs Debian's
nginx for tests and local use, command.py is `i2v gateway`.
"""
