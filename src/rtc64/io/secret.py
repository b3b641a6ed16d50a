"""The gateway's persistent secret: 32 random bytes in ``DATA_DIR/secret.key`` (mode 0600).

It keys the HMACs that must survive a restart and be shared by gateways that share a
data directory or copy the file: digest nonces and the Record-Route tokens that let only
dialogs we record-routed use us as an in-dialog relay.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

SIZE = 32


def load_secret(data_dir: Path) -> bytes:
    """Read the secret, creating it on first start."""
    path = data_dir / "secret.key"
    try:
        data = path.read_bytes()
        if len(data) >= SIZE:
            return data[:SIZE]
    except FileNotFoundError:
        pass
    data = secrets.token_bytes(SIZE)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    tmp.replace(path)
    return data
