#!/bin/sh
# Write the secrets compose.yaml mounts into deploy/secrets/ (git-ignored), once. Existing files
# are kept. Passwords are letters and digits starting with a letter (what nats-server's variables
# need). Prints the ingest and moderator tokens: give them to the producers and moderators.
set -eu
dir=$(dirname "$0")/secrets
mkdir -p "$dir"
umask 077
new() { python3 -c 'import secrets; print("p" + secrets.token_hex(24))'; }
put() { [ -e "$dir/$1" ] || printf '%s\n' "$2" > "$dir/$1"; }
for role in admin ingest simulator moderation worker forum_web breakglass sys; do
    put "nats_${role}_password" "$(new)"
done
put postgres_password "$(new)"
put postgres_read_password "$(new)"
put agora_database_url "postgresql+psycopg://agora:$(cat "$dir/postgres_password")@postgres:5432/agora"
put agora_id_key "$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
put agora_read_database_url "postgresql+psycopg://agora_read:$(cat "$dir/postgres_read_password")@postgres:5432/agora"
if [ ! -e "$dir/ingest_tokens.json" ]; then
    token=$(new)
    hash=$(printf '%s' "$token" | sha256sum | cut -d' ' -f1)
    printf '[{"producer": "demo", "sha256": "%s", "communities": ["*"], "types": ["*"]}]\n' "$hash" \
        > "$dir/ingest_tokens.json"
    echo "ingest token of producer 'demo': $token"
fi
if [ ! -e "$dir/moderator_tokens" ]; then
    token=$(new)
    printf 'mod1@*=%s\n' "$token" > "$dir/moderator_tokens"
    echo "moderator token of mod1 (every community; edit $dir/moderator_tokens to scope it): $token"
fi
echo "secrets in $dir"
