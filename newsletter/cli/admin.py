"""`newsletter admin …`: operator accounts for the web console and bearer tokens for the JSON API.

The group is shared by two families of commands: console accounts (docs/admin.md) and API tokens (docs/api.md).
"""

from __future__ import annotations

import click


@click.group()
def admin() -> None:
    """Operator accounts for the web console (/admin/) and tokens for the JSON API (/api/v1/)."""
