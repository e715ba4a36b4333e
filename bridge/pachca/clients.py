"""The Pachca API client the bridge uses, built from the live config.

Reading ``rt.live.current.pachca`` on each use means a config reload that changes the token,
the API URL or the timeout takes effect on the next call. A replaced client may still have calls
in flight, so it is kept and closed at shutdown rather than at once (token changes are rare).
"""

from __future__ import annotations

from bot.client import PachcaClient
from bridge.config import LiveConfig, PachcaConfig


def not_ready_reason(cfg: PachcaConfig) -> str | None:
    """Why nothing can be sent to Pachca under this config, or None when it can."""
    if not cfg.enabled:
        return "Pachca relay is disabled (pachca.enabled is false)"
    if not cfg.token.get_secret_value():
        return "no Pachca bot token configured (pachca.token)"
    return None


class PachcaClients:
    def __init__(self, live: LiveConfig):
        self.live = live
        self._client: PachcaClient | None = None
        self._built_from: tuple[str, str, float] | None = None
        self._retired: list[PachcaClient] = []

    def current(self) -> PachcaClient | None:
        """The client for the config in force; None while Pachca is disabled or has no token."""
        cfg = self.live.current.pachca
        if not_ready_reason(cfg) is not None:
            return None
        wanted = (cfg.api_url, cfg.token.get_secret_value(), cfg.request_timeout_s)
        if self._client is None or wanted != self._built_from:
            if self._client is not None:
                self._retired.append(self._client)
            self._client = PachcaClient(cfg.api_url, wanted[1], timeout=cfg.request_timeout_s)
            self._built_from = wanted
        return self._client

    async def aclose(self) -> None:
        clients = [*self._retired, *([self._client] if self._client else [])]
        self._client, self._built_from, self._retired = None, None, []
        for client in clients:
            await client.aclose()
