"""Issue 30: a Space or any non-loopback bind without sign-in is visitor-only (Predict), never one
open coordinator; anonymous Hugging Face visitors share no identity; expired OAuth sessions are out."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import fastapi
import gradio as gr
import numpy as np
import pytest
from gradio_client import handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from live_app import live_app
from melasma.access import (
    GUEST,
    AccessDenied,
    Role,
    local_mode,
    require,
    require_job_owner,
    require_rater,
    role_of,
    sign_in_mode,
    visitor_only,
)
from melasma.settings import DEFAULT_RATERS, Settings
from melasma.ui.app import bound_settings, hf_username

GOOD = [2, 2, 1] * 4


@pytest.mark.parametrize("env", [
    {"SPACE_ID": "someone/studio"},
    {"SPACE_ID": "someone/studio", "GRADIO_SERVER_NAME": "127.0.0.1"},  # a Space's proxy makes it public
    {"GRADIO_SERVER_NAME": "0.0.0.0"},
    {"GRADIO_SERVER_NAME": "192.168.1.20"},
    {"GRADIO_SERVER_NAME": "::"},
    {"GRADIO_SERVER_NAME": "clinic.example.org"},
], ids=["space", "space-loopback", "any", "lan", "any-v6", "hostname"])
def test_reachable_without_sign_in_is_visitor_only(env: dict[str, str]) -> None:
    settings = Settings.from_env(env)
    assert visitor_only(settings) and not local_mode(settings)
    assert role_of(None, settings) is Role.VISITOR
    with pytest.raises(AccessDenied, match="MELASMA_AUTH or MELASMA_OAUTH"):
        require(Role.COORDINATOR, None, settings)
    with pytest.raises(AccessDenied, match="sign in"):
        require_rater(None, "rater1", settings)


@pytest.mark.parametrize("host", ["", "127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2"])
def test_loopback_without_sign_in_is_the_local_coordinator(host: str) -> None:
    settings = Settings.from_env({"GRADIO_SERVER_NAME": host} if host else {})
    assert local_mode(settings) and role_of(None, settings) is Role.COORDINATOR


def test_local_mode_anywhere_only_by_explicit_opt_in() -> None:
    opted = Settings.from_env({"SPACE_ID": "me/studio", "MELASMA_LOCAL_MODE": "1"})
    assert local_mode(opted) and role_of(None, opted) is Role.COORDINATOR
    with pytest.raises(ValueError, match="MELASMA_LOCAL_MODE=1 means nobody signs in"):
        Settings.from_env({"MELASMA_LOCAL_MODE": "1", "MELASMA_AUTH": "a:b"})


def test_serve_address_and_share_link_decide_the_mode() -> None:
    local = Settings()
    assert sign_in_mode(bound_settings(local, host=None, share=False)) == "local"
    assert sign_in_mode(bound_settings(local, host="127.0.0.1", share=False)) == "local"
    assert sign_in_mode(bound_settings(local, host="0.0.0.0", share=False)) == "visitor-only"
    assert sign_in_mode(bound_settings(local, host="127.0.0.1", share=True)) == "visitor-only"
    assert sign_in_mode(bound_settings(Settings(auth=(("a", "b"),)), host="0.0.0.0", share=True)) == "passwords"


def test_visitor_only_banner_says_how_to_enable_sign_in(tmp_path: Path) -> None:
    from melasma.ui.annotate import build_annotate_tab

    with gr.Blocks():
        tab = build_annotate_tab(Settings(data_dir=tmp_path, space_id="me/studio"))
    shown = tab.welcome(gr.Request(username=None))
    banner = shown[tab.banner]
    assert "Visitor-only mode" in banner and "MELASMA_AUTH" in banner and "MELASMA_OAUTH" in banner
    assert not any(shown[t].visible for t in tab.tabs.values())


def _oauth_request(session: dict[str, Any] | None) -> fastapi.Request:
    scope: dict[str, Any] = {"type": "http", "headers": []}
    if session is not None:
        scope["session"] = session
    return fastapi.Request(scope)


def test_expired_or_malformed_oauth_sessions_are_guests() -> None:
    def info(expires_at: object, name: object = "boss") -> dict[str, Any]:
        return {"oauth_info": {"expires_at": expires_at, "userinfo": {"preferred_username": name}}}

    assert hf_username(_oauth_request(info(time.time() + 3600))) == "boss"
    assert hf_username(_oauth_request(info(time.time() - 1))) == GUEST
    assert hf_username(_oauth_request(info(None))) == "boss"  # no expiry given: kept, as Gradio keeps it
    for bad in ({}, {"oauth_info": []}, {"oauth_info": "x"}, info("9999999999"), info(True),
                info(time.time() + 3600, name=["boss"]), info(time.time() + 3600, name="")):
        assert hf_username(_oauth_request(bad)) == GUEST
    assert hf_username(_oauth_request(None)) == GUEST


def test_anonymous_visitors_own_no_jobs_and_are_never_raters() -> None:
    oauth = Settings(oauth=True, coordinators=("boss",), raters=("ann", GUEST), visitors_can_train=True)
    assert role_of(GUEST, oauth) is Role.VISITOR
    with pytest.raises(AccessDenied, match="sign in"):
        require_rater(GUEST, None, oauth)
    for anonymous in (None, GUEST):
        with pytest.raises(AccessDenied, match="anonymous visitors cannot own"):
            require_job_owner(anonymous, oauth)
    assert require_job_owner("eve", oauth) == "eve"
    assert require_job_owner(None, Settings()) is None  # the local coordinator


def test_no_default_rater_names_under_real_sign_in() -> None:
    assert Settings.from_env({"MELASMA_OAUTH": "1"}).raters == ()
    assert role_of("rater1", Settings.from_env({"MELASMA_OAUTH": "1"})) is Role.VISITOR
    assert Settings.from_env({"MELASMA_AUTH": "boss:pw", "MELASMA_COORDINATORS": "boss"}).raters == ()
    assert Settings.from_env({}).raters == DEFAULT_RATERS


@pytest.mark.live
def test_a_space_without_sign_in_serves_predict_only(tmp_path: Path) -> None:
    """The app as the README ships it on a Space: every coordinator and rater endpoint refuses."""
    photo = tmp_path / "face.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(photo)
    calls = {
        "/ingest": lambda c: c.predict([handle_file(str(photo))], "", "", api_name="/ingest"),
        "/photos": lambda c: c.predict(api_name="/photos"),
        "/agreement": lambda c: c.predict(api_name="/agreement"),
        "/export": lambda c: c.predict(api_name="/export"),
        "/adjudicate": lambda c: c.predict("0" * 16, 10, "why", api_name="/adjudicate"),
        "/request_rerate": lambda c: c.predict("0" * 16, "rater1", "why", api_name="/request_rerate"),
        "/next_image": lambda c: c.predict("rater1", api_name="/next_image"),
        "/submit_rating": lambda c: c.predict("rater1", "0" * 16, *GOOD, api_name="/submit_rating"),
        "/patients": lambda c: c.predict("", api_name="/patients"),
    }
    with live_app(tmp_path / "data", space_id="someone/studio") as (_, client):
        refused = {}
        for name, call in calls.items():
            with pytest.raises(AppError) as caught:
                call(client)
            refused[name] = str(caught.value)
        assert all(("sign in" in message) for message in refused.values()), refused
        answer = client.predict(handle_file(str(photo)), "demo", api_name="/predict")
        assert answer is not None
