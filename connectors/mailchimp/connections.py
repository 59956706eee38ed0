"""The HTTP under the Mailchimp SDK: one pooled session, and a gate on simultaneous calls."""

from __future__ import annotations

import json
import threading

import requests
from mailchimp_marketing.api_client import ApiClient
from requests.adapters import HTTPAdapter

from connectors.clock import ProviderClock

# https://mailchimp.com/developer/marketing/docs/fundamentals/#api-limits : 10 simultaneous connections
MAX_CONNECTIONS = 10


class PooledApiClient(ApiClient):
    """The SDK's client on one pooled ``requests.Session``: the SDK opens a connection per call.

    The pool is as large as the concurrency and blocks beyond it, so syncd never opens more
    connections than Mailchimp allows at once.
    """

    def __init__(self, config: dict, pool_size: int, clock: ProviderClock | None = None):
        super().__init__(config)
        self.clock = clock or ProviderClock()  # told the Date of every answer
        self._session = requests.Session()
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size, pool_block=True, max_retries=0)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)

    def request(self, method, url, query_params=None, headers=None, body=None):  # noqa: ANN001
        # No body when the SDK has none (an action such as delete-permanent), not a JSON null.
        data = json.dumps(body) if method in ("POST", "PUT", "PATCH") and body is not None else None
        response = self._session.request(
            method,
            url,
            params=query_params,
            headers=headers,
            data=data,
            auth=("syncd", self.api_key),
            timeout=self.timeout,
        )
        self.clock.saw(response.headers.get("Date"))
        return response

    def close(self) -> None:
        self._session.close()


class ConnectionGate:
    """At most ``limit`` calls in flight; the limit halves on a 429 and creeps back on success.

    Mailchimp counts simultaneous connections per account, so other apps on the same account
    take some of the 10: a 429 means "fewer at once", not "wait and send as many".
    """

    def __init__(self, limit: int):
        self.ceiling = self.limit = limit
        self._in_flight = self._successes = 0
        self._cond = threading.Condition()

    def __enter__(self) -> ConnectionGate:
        with self._cond:
            while self._in_flight >= self.limit:
                self._cond.wait()
            self._in_flight += 1
        return self

    def __exit__(self, *exc: object) -> None:
        with self._cond:
            self._in_flight -= 1
            self._cond.notify_all()

    def crowded(self) -> None:
        with self._cond:
            self.limit, self._successes = max(1, min(self.limit, self._in_flight) // 2), 0

    def succeeded(self) -> None:
        with self._cond:
            self._successes += 1
            if self._successes >= self.limit and self.limit < self.ceiling:
                self.limit, self._successes = self.limit + 1, 0
                self._cond.notify_all()
