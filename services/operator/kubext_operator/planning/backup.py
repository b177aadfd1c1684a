"""The Jobs' scripts: a backup writes one gzip'd logical dump and prunes to the newest N; a
restore loads one dump (a named one, or the newest) into the primary."""

from __future__ import annotations

BACKUP_DIR = "/backup"
LATEST = "latest"
DUMP_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]*\.dump\.gz"
"""A dump's file name in the backup volume, as a restore request may name it (no paths)."""

# DB_HOST is the -rw Service's name. Its address comes from the variable the kubelet sets for each
# Service of the namespace (<NAME>_SERVICE_HOST, as `enableServiceLinks`, the default, has it)
# when there is one, else from the cluster's DNS: a cluster without DNS (the rig's real node)
# resolves only the first. Both are the Service's ClusterIP.
_SERVICE_ADDRESS = """\
DB_HOST=$(printenv "$(printf %s "$DB_HOST" | tr 'a-z.-' 'A-Z__')_SERVICE_HOST" || echo "$DB_HOST")
"""

_SCRIPT = """\
set -euo pipefail
{service_address}rm -f "$BACKUP_DIR"/*.partial
stamp=$(date -u +%Y%m%dT%H%M%SZ)
out="$BACKUP_DIR/$DB_NAME-$stamp.dump.gz"
{dump} | gzip > "$out.partial"
mv "$out.partial" "$out"
ls -1 "$BACKUP_DIR"/"$DB_NAME"-*.dump.gz | sort -r | tail -n +$((RETENTION + 1)) \\
  | xargs -r rm -f --
echo "backup: wrote $out; kept the newest $RETENTION"
"""


def script(dump: str) -> str:
    """Bash run by the backup Job. Reads DB_HOST (a Service's name; its ``<NAME>_SERVICE_HOST``
    variable wins), DB_USER, DB_PASSWORD, DB_NAME, BACKUP_DIR and RETENTION; a failed dump
    leaves no file behind (pipefail, then the .partial is removed on the next run), and pruning
    counts only complete dumps (names sort by their UTC time)."""
    return _SCRIPT.format(service_address=_SERVICE_ADDRESS, dump=dump)


_RESTORE = """\
set -euo pipefail
{service_address}if [ "$RESTORE_FROM" = {latest} ]; then
  file=$(ls -1 "$BACKUP_DIR"/"$DB_NAME"-*.dump.gz 2>/dev/null | sort -r | head -n 1 || true)
else
  file="$BACKUP_DIR/$RESTORE_FROM"
fi
if [ -z "$file" ] || [ ! -f "$file" ]; then
  echo "restore: no dump $RESTORE_FROM in $BACKUP_DIR" >&2
  exit 1
fi
gunzip -c "$file" | {restore}
echo "restore: loaded $file"
"""


def restore_script(restore: str) -> str:
    """Bash run by a restore Job. Reads RESTORE_FROM (a dump's file name, or ``latest`` for the
    newest complete dump of DB_NAME), BACKUP_DIR and the DB_* variables; fails, loading
    nothing, when the dump is not there or is not a valid gzip stream."""
    return _RESTORE.format(service_address=_SERVICE_ADDRESS, latest=LATEST, restore=restore)
