#!/bin/sh
# First start of the postgres container only (docker-entrypoint-initdb.d): the dashboard's
# read-only role agora_read, as docs/operations.md describes, with its password from a secret.
# Both of its steps run as agora: in this image agora (POSTGRES_USER) is the superuser and the
# owner of the tables. Elsewhere the owner usually may not create roles: see the docs.
set -eu
password=$(cat /run/secrets/postgres_read_password)
psql -v ON_ERROR_STOP=1 --username agora --dbname agora -v pw="$password" <<'SQL'
CREATE ROLE agora_read LOGIN PASSWORD :'pw';
GRANT CONNECT ON DATABASE agora TO agora_read;
GRANT USAGE ON SCHEMA public TO agora_read;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO agora_read;
ALTER DEFAULT PRIVILEGES FOR ROLE agora IN SCHEMA public GRANT SELECT ON TABLES TO agora_read;
SQL
