"""The schema revisions this code knows, read from the migration files' headers.

Every command checks the database's schema against them; loading Alembic's script machinery
(or SQLAlchemy, for a read command that needs neither) would add a large part of a command's
start-up, so the files are read with a regular expression.
"""

from __future__ import annotations

import re
from pathlib import Path

from rearguard.models.errors import ConfigurationError

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_REVISION_LINE = re.compile(r"^(down_revision|revision)\s*=\s*['\"]?([\w]+)?['\"]?", re.M)


def known_revisions() -> tuple[set[str], str]:
    """Return every migration's revision id and the head, read from the migration files.

    Raises:
        ConfigurationError: the migrations do not form one line (none or several heads).
    """
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        fields = dict(_REVISION_LINE.findall(path.read_text(encoding="utf-8")))
        if fields.get("revision"):
            revisions.add(fields["revision"])
            if fields.get("down_revision"):
                parents.add(fields["down_revision"])
    heads = revisions - parents
    if len(heads) != 1:
        raise ConfigurationError(f"the installed migrations have heads {sorted(heads)}")
    return revisions, heads.pop()
