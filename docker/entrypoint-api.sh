#!/bin/sh
# Entrypoint of the api image: seed the demo models into an empty models directory, apply the
# database migrations when the command starts the server, then hand the process over to the command.
set -eu

models_dir="${GENEXFER_MODELS_DIR:-/models}"
demo_dir="${DEMO_MODELS_DIR:-/opt/genexfer/models-demo}"

# Only an empty directory is seeded: models already there (the lab's own, or retrained ones) are
# never overwritten, and a version folder, once written, never changes.
if [ -d "$demo_dir" ] && [ -z "$(ls -A "$models_dir" 2>/dev/null)" ]; then
    if mkdir -p "$models_dir" && cp -R "$demo_dir/." "$models_dir/"; then
        echo "entrypoint: seeded demo models into $models_dir" >&2
    else
        echo "entrypoint: warning: could not seed demo models into $models_dir" >&2
    fi
fi

if [ "${1:-}" = "genexfer" ] && [ "${2:-}" = "serve" ]; then
    genexfer db upgrade
fi

exec "$@"
