#!/bin/sh
# Entry point of the Agora image (and of the nats-server containers of compose.yaml): secrets
# from files, then the command.
#
# For every AGORA_<SETTING>_FILE or NATS_<NAME>_FILE variable (a Docker/Kubernetes secret mounted
# as a file), export AGORA_<SETTING> / NATS_<NAME> with the file's content (trailing newlines
# dropped) and unset the _FILE variable (Agora refuses AGORA_* variables that are not settings).
# Then run the command: "agora ...", "python -m agora.web ..." or "nats-server ...".
set -eu
names=$(env | sed -n -e 's/^\(AGORA_[A-Z0-9_]*\)_FILE=.*/\1/p' -e 's/^\(NATS_[A-Z0-9_]*\)_FILE=.*/\1/p')
for name in $names; do
    file=$(printenv "${name}_FILE")
    if [ ! -r "$file" ]; then
        echo "entrypoint: ${name}_FILE=$file is not a readable file" >&2
        exit 2
    fi
    value=$(cat "$file")
    export "$name=$value"
    unset "${name}_FILE"
done
exec "$@"
