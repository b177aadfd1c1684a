"""The pod policy file: loaded at start, re-read on demand, an invalid edit never taking effect."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kubext_webhooks import policy

log = logging.getLogger(__name__)


@dataclass
class PolicyStore:
    """The current policy; :meth:`maybe_reload` swaps in a changed file if it is valid.

    An invalid new file never replaces a working policy: the old one stays, the error is logged
    and counted. Change detection hashes the content, so Secret/ConfigMap symlink swaps count.
    """

    path: str | None
    policy: policy.PodPolicy
    digest: str = ""
    on_reload: Callable[[str], None] | None = None

    @classmethod
    def open(
        cls, path: str | None, *, on_reload: Callable[[str], None] | None = None
    ) -> PolicyStore:
        """Load ``path`` (or the built-in default policy); raises PolicyError when invalid."""
        if path is None:
            return cls(path=None, policy=policy.PodPolicy(), on_reload=on_reload)
        text = _read(path)
        return cls(
            path=path,
            policy=policy.parse_policy(text, source=path),
            digest=_digest(text),
            on_reload=on_reload,
        )

    def maybe_reload(self) -> bool:
        """Reload if the file's content changed; True when a new policy took effect."""
        if self.path is None:
            return False
        try:
            text = _read(self.path)
        except policy.PolicyError as exc:
            log.error("policy reload failed; keeping the current policy", extra={"error": str(exc)})
            self._count("error")
            return False
        digest = _digest(text)
        if digest == self.digest:
            return False
        try:
            loaded = policy.parse_policy(text, source=self.path)
        except policy.PolicyError as exc:
            log.error("policy reload failed; keeping the current policy", extra={"error": str(exc)})
            self.digest = digest  # report a bad file once, not on every poll
            self._count("error")
            return False
        self.policy, self.digest = loaded, digest
        log.info("policy reloaded", extra={"policy": loaded.name, "path": self.path})
        self._count("success")
        return True

    def _count(self, result: str) -> None:
        if self.on_reload is not None:
            self.on_reload(result)


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise policy.PolicyError(
            f"{path}: cannot read policy file: {exc.strerror or exc}"
        ) from None


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
