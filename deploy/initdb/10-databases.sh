#!/bin/bash
# Create the three databases named in POSTGRES_MULTIPLE_DATABASES (catalog, authn, tables).
set -euo pipefail
for db in ${POSTGRES_MULTIPLE_DATABASES//,/ }; do
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" -c "CREATE DATABASE \"$db\""
done
