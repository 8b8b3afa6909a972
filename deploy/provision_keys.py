"""Provision the bcdi-stream service identities on a Tiled server configured with
``deploy/tiled/config.yml``: log in as the Tiled administrator, create

- a **writer** service principal and an API key with the write scopes the RunEngine's
  TiledWriter and the worker need (read, create, register, write, delete: results replace
  ``processed/<uid>``), no administrative scope;
- a **reader** service principal and a read-only API key (``read:metadata``, ``read:data``) for
  browsing and analysis clients.

Keys are written to ``--out-dir`` as files of mode 0600 (``writer.key``, ``reader.key``), never
printed; the JSON summary on stdout names the principals and files only.

    BCDI_ADMIN_PASSWORD=... python deploy/provision_keys.py --tiled http://host:8000 \
        --out-dir /etc/bcdi-stream/keys
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import httpx

WRITER_SCOPES = ["read:metadata", "read:data", "create:node", "register", "write:metadata",
                 "write:data", "delete:node", "delete:revision"]
READER_SCOPES = ["read:metadata", "read:data"]


def provision(base: str, password: str, out_dir: Path, admin: str = "bcdiadmin",
              provider: str = "local", expires_in: int | None = None) -> dict:
    """Create the two principals and their keys; returns a summary without the secrets."""
    if not base.startswith(("http://", "https://")):
        raise ValueError(f"base must be an http(s) URL, got {base!r}")
    if not password:
        raise ValueError("password must be non-empty (set BCDI_ADMIN_PASSWORD)")
    api = base.rstrip("/").removesuffix("/api/v1") + "/api/v1"
    out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    with httpx.Client(timeout=30) as http:
        r = http.post(f"{api}/auth/provider/{provider}/token",
                      data={"username": admin, "password": password})
        r.raise_for_status()
        headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
        summary = {}
        for name, role, scopes in (("writer", "admin", WRITER_SCOPES),
                                   ("reader", "user", READER_SCOPES)):
            p = http.post(f"{api}/auth/principal", params={"role": role}, headers=headers)
            p.raise_for_status()
            uuid = p.json()["uuid"]
            k = http.post(f"{api}/auth/principal/{uuid}/apikey", headers=headers,
                          json={"scopes": scopes, "expires_in": expires_in,
                                "note": f"bcdi-stream {name}"})
            k.raise_for_status()
            path = out_dir / f"{name}.key"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(k.json()["secret"] + "\n")
            summary[name] = {"principal": uuid, "scopes": scopes, "key_file": str(path)}
    return summary


def main() -> int:
    ap = argparse.ArgumentParser(description="Create the bcdi-stream writer and reader keys.")
    ap.add_argument("--tiled", required=True, help="http://host:8000")
    ap.add_argument("--out-dir", required=True, type=Path)
    ap.add_argument("--admin", default="bcdiadmin")
    ap.add_argument("--expires-in", type=int, default=None, help="seconds (default: never)")
    args = ap.parse_args()
    try:
        summary = provision(args.tiled, os.environ.get("BCDI_ADMIN_PASSWORD", ""),
                            args.out_dir, admin=args.admin, expires_in=args.expires_in)
    except (ValueError, httpx.HTTPError) as exc:
        print(f"provision_keys: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
