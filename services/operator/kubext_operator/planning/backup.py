"""The backup Job's script: one gzip'd logical dump per run, then prune to the newest N."""

from __future__ import annotations

BACKUP_DIR = "/backup"

_SCRIPT = """\
set -euo pipefail
rm -f "$BACKUP_DIR"/*.partial
stamp=$(date -u +%Y%m%dT%H%M%SZ)
out="$BACKUP_DIR/$DB_NAME-$stamp.dump.gz"
{dump} | gzip > "$out.partial"
mv "$out.partial" "$out"
ls -1 "$BACKUP_DIR"/"$DB_NAME"-*.dump.gz | sort -r | tail -n +$((RETENTION + 1)) \\
  | xargs -r rm -f --
echo "backup: wrote $out; kept the newest $RETENTION"
"""


def script(dump: str) -> str:
    """Bash run by the backup Job. Reads DB_HOST, DB_USER, DB_PASSWORD, DB_NAME, BACKUP_DIR and
    RETENTION; a failed dump leaves no file behind (pipefail, then the .partial is removed on
    the next run), and pruning counts only complete dumps (names sort by their UTC time)."""
    return _SCRIPT.format(dump=dump)
