"""A small client of Airflow 3's public REST API: what the gateway needs to wake a running scheduler.

Airflow 3 authenticates API calls with a JWT: `POST /auth/token` with a user name and password
(the simple auth manager of `airflow standalone`; `GET /auth/token` when it runs with
`simple_auth_manager_all_admins`), then `Authorization: Bearer <jwt>` on `/api/v2/...`.
An asset event is posted with `POST /api/v2/assets/events` and the asset's numeric id, looked
up by URI with `GET /api/v2/assets?uri_pattern=...` (a substring search: the exact URI is picked
from the answer). The password and the token are never logged nor put in a message.

Errors: Airflow unreachable, a 5xx or an asset Airflow has not parsed yet are transient
(`AirflowUnavailableError`, a retry may help); refused credentials are terminal
(`AirflowAuthError`, an operator must fix the settings).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import requests

from schemas.errors import TerminalError, TransientError

# the asset a push feed's ingest DAG is scheduled on (dags/ingest.py `landing_asset`); a DAG test
# checks that both spell it the same way
LANDING_ASSET = "civicnet://landing/{dataset}"
PAGE = 100


def landing_asset_uri(dataset: str) -> str:
    """The URI of the asset whose events start the ingest of pushed batches of `dataset`."""
    return LANDING_ASSET.format(dataset=dataset)


class AirflowUnavailableError(TransientError):
    """Airflow's API did not answer usefully (down, 5xx, or an asset it has not parsed yet)."""


class AirflowAuthError(TerminalError):
    """Airflow refused the gateway's credentials or their rights."""


class AirflowRequestError(TerminalError):
    """Airflow refused a request as malformed (4xx other than auth): a civicnet or config defect."""


@dataclass(frozen=True)
class AirflowApiSettings:
    """Where Airflow's API server is and who the gateway is there (no password in repr)."""

    url: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = 30.0

    @property
    def base(self) -> str:
        """The URL without a trailing slash."""
        return self.url.rstrip("/")


class AirflowApi:
    """Calls to one Airflow API server, with a JWT fetched once and renewed when refused."""

    def __init__(self, settings: AirflowApiSettings, session: requests.Session | None = None) -> None:
        self.settings = settings
        self._session = session or requests.Session()
        self._token: str | None = None

    def _send(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        url = self.settings.base + path
        try:
            return self._session.request(method, url, timeout=self.settings.timeout, **kwargs)
        except requests.RequestException as err:  # the message names the URL only, never credentials
            raise AirflowUnavailableError(f"Airflow's API at {self.settings.base} did not answer "
                                          f"({type(err).__name__}); start it (`civicnet airflow --home ...`) "
                                          "or check --airflow-url") from None

    def _fetch_token(self) -> str:
        s = self.settings
        if s.username and s.password:
            answer = self._send("POST", "/auth/token", json={"username": s.username, "password": s.password})
        else:  # only an Airflow running with simple_auth_manager_all_admins hands out a token without them
            answer = self._send("GET", "/auth/token")
        if answer.status_code in (400, 401, 403):
            who = f"user {s.username!r}" if s.username else "no user name (set CIVICNET_AIRFLOW_USERNAME)"
            raise AirflowAuthError(f"Airflow at {s.base} refused the gateway's credentials ({who}, HTTP "
                                   f"{answer.status_code}); set CIVICNET_AIRFLOW_USERNAME and "
                                   "CIVICNET_AIRFLOW_PASSWORD to a user of that Airflow")
        _raise_for(answer, "POST /auth/token", s.base)
        token = answer.json().get("access_token")
        if not isinstance(token, str) or not token:
            raise AirflowUnavailableError(f"Airflow at {s.base} answered /auth/token without an access_token")
        return token

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """One authenticated call to the API; the decoded JSON answer."""
        for attempt in (1, 2):
            if self._token is None:
                self._token = self._fetch_token()
            answer = self._send(method, path, headers={"Authorization": f"Bearer {self._token}"}, **kwargs)
            if answer.status_code == 401 and attempt == 1:  # expired: fetch a new token once
                self._token = None
                continue
            if answer.status_code in (401, 403):
                raise AirflowAuthError(f"Airflow at {self.settings.base} refused {method} {path} for user "
                                       f"{self.settings.username!r} (HTTP {answer.status_code}); give that user "
                                       "a role that may create asset events (admin or op)")
            _raise_for(answer, f"{method} {path}", self.settings.base)
            return answer.json()
        raise AssertionError("unreachable")  # pragma: no cover

    def asset(self, uri: str) -> dict[str, Any]:
        """The asset with exactly this URI, as Airflow knows it (raises if it does not, yet)."""
        found = self.request("GET", "/api/v2/assets", params={"uri_pattern": uri, "limit": PAGE})
        for asset in found.get("assets", []):
            if asset.get("uri") == uri:
                return dict(asset)
        raise AirflowUnavailableError(f"Airflow at {self.settings.base} knows no asset {uri!r} yet: its DAG "
                                      "processor has not parsed civicnet's dags/ folder (wait a minute), or it "
                                      "runs another DAGs folder (start it with `civicnet airflow`)")

    def dag_paused(self, dag_id: str) -> bool:
        """Whether a DAG is paused (its scheduler ignores asset events while it is)."""
        return bool(self.request("GET", f"/api/v2/dags/{dag_id}")["is_paused"])

    def post_asset_event(self, asset_id: int, extra: dict[str, Any]) -> dict[str, Any]:
        """Record an asset event; the scheduler then runs the DAGs scheduled on that asset."""
        answer: dict[str, Any] = self.request("POST", "/api/v2/assets/events",
                                              json={"asset_id": asset_id, "extra": extra})
        return answer

    def dag_ids(self) -> list[str]:
        """The ids of every DAG Airflow has parsed."""
        ids: list[str] = []
        while True:
            page = self.request("GET", "/api/v2/dags", params={"limit": PAGE, "offset": len(ids)})
            ids += [d["dag_id"] for d in page.get("dags", [])]
            if not page.get("dags") or len(ids) >= int(page.get("total_entries", 0)):
                return ids


def _raise_for(answer: requests.Response, what: str, base: str) -> None:
    """Raise the civicnet error of a failed answer: 5xx and 404 transient, other 4xx terminal."""
    if answer.status_code < 400:
        return
    detail = answer.text[:300]
    if answer.status_code >= 500 or answer.status_code in (404, 429):
        raise AirflowUnavailableError(f"Airflow at {base} answered {what} with HTTP {answer.status_code}: "
                                      f"{detail}")
    raise AirflowRequestError(f"Airflow at {base} refused {what} (HTTP {answer.status_code}): {detail}; "
                              "check that it runs Airflow 3.3 (the API civicnet speaks)")
