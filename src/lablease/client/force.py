"""``lablease unlock --force``: an admin destroys and frees cloud nodes in any state, whoever holds them.

One request per node (POST /lab/nodes/<name>/force-unlock/, with the admin token); every node is
tried, and the exit code is the first failure's.
"""

from __future__ import annotations

from typing import Any

from lablease.client.lockclient import LockClientError
from lablease.client.nodes import admin_client
from lablease.client.support import Session, exit_code


def force_unlock(session: Session, names: list[str], by: str, token: str | None) -> None:
    """Force every one of ``names`` free for ``by``; print each outcome, exit non-zero if any failed."""
    client, _ = admin_client(session.url, None, token)
    done: list[dict[str, Any]] = []
    failed: list[tuple[str, LockClientError]] = []
    with client:
        for name in names:
            try:
                done.append(client.force_unlock(name, by))
            except LockClientError as exc:
                failed.append((name, exc))
                session.err.print(f"error: {name}: {exc.reason if exc.status else exc}", markup=False,
                                  highlight=False)
    if session.as_json:
        session.emit_json(done)
    elif not session.quiet and done:
        session.out.print(f"force-unlocked {len(done)} node(s): {', '.join(n['name'] for n in done)} "
                          "(destroyed and free)", markup=False, highlight=False)
    if failed:
        session.fail(exit_code(failed[0][1]), f"{len(failed)} of {len(names)} node(s) not force-unlocked",
                     failed[0][1].status)
