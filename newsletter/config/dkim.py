"""``[delivery.dkim]``: the DKIM signing key of every message (docs/deployment.md)."""

from __future__ import annotations

from dataclasses import dataclass

from newsletter.config.checks import check_non_empty
from newsletter.config.declare import setting


@dataclass(frozen=True, kw_only=True)
class DkimSettings:
    selector: str = setting(help="DKIM selector: the key is published at SELECTOR._domainkey.DOMAIN.",
        check=check_non_empty)
    domain: str = setting(help="Signing domain (d=), normally the domain of from_address.", check=check_non_empty)
    private_key_path: str = setting(help="PEM file of the RSA private key (relative to the config file).",
                                    check=check_non_empty)
