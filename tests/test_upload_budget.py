"""Issue 30 item 6: per-client and server-wide upload budgets per hour, checked from Content-Length
before Gradio stores anything (an anonymous visitor once stored 472 MB in 3.5 s)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from live_app import live_app
from melasma.settings import Settings
from melasma.ui.uploads import MB, UploadLedger, client_key


def test_the_ledger_counts_per_client_and_in_total_over_the_window() -> None:
    ledger = UploadLedger(per_client=10 * MB, total=25 * MB, window_s=3600)
    assert ledger.admit("a", 6 * MB, now=0) is None
    assert "per person per hour" in (ledger.admit("a", 6 * MB, now=10) or "")
    assert ledger.admit("b", 9 * MB, now=20) is None
    assert ledger.admit("c", 9 * MB, now=30) is None
    assert "this server has taken its 25 MB" in (ledger.admit("d", 2 * MB, now=40) or "")
    assert ledger.admit("a", 6 * MB, now=3601) is None  # a's first upload has left the window


def test_clients_are_told_apart_by_sign_in_cookie_then_address() -> None:
    def scope(headers: dict[str, str], client: tuple[str, int] = ("10.0.0.9", 5)) -> dict[str, object]:
        return {"headers": [(k.encode(), v.encode()) for k, v in headers.items()], "client": client}

    assert client_key(scope({})) == "ip=10.0.0.9"
    assert client_key(scope({"x-forwarded-for": "203.0.113.7, 10.0.0.1"})) == "ip=203.0.113.7"
    assert client_key(scope({"cookie": "a=b; access-token-xyz=tok123"})).startswith("access-token-xyz=")
    assert client_key(scope({"cookie": "session=abc"})) == "session=abc"


def test_settings_refuse_a_budget_below_one_upload() -> None:
    with pytest.raises(ValueError, match="must be at least MELASMA_MAX_UPLOAD_MB"):
        Settings.from_env({"MELASMA_UPLOAD_BUDGET_MB_PER_USER": "10", "MELASMA_MAX_UPLOAD_MB": "50"})


@pytest.mark.live
def test_the_live_app_refuses_uploads_past_the_budgets(tmp_path: Path) -> None:
    blob = b"\0" * (900 * 1024)  # under the 1 MB per-file cap
    with live_app(tmp_path, max_upload_mb=1, upload_budget_mb_per_user=2, upload_budget_mb=3) as (url, _):
        def upload(address: str) -> httpx.Response:
            return httpx.post(f"{url}gradio_api/upload", files={"files": ("x.bin", blob)},
                              headers={"x-forwarded-for": address}, timeout=60)

        assert [upload("198.51.100.1").status_code for _ in range(2)] == [200, 200]
        third = upload("198.51.100.1")
        assert third.status_code == 413 and "per person per hour" in third.json()["detail"]
        assert upload("198.51.100.2").status_code == 200
        last = upload("198.51.100.3")
        assert last.status_code == 413 and "this server has taken its 3 MB" in last.json()["detail"]
