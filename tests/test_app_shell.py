"""The app shell: entry points, settings from flags/env, first-start data, wiring, sign-in, file safety."""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from gradio_client import Client
from starlette.requests import Request

from live_app import free_port, live_app
from melasma.cli import serve as serve_cli
from melasma.settings import Settings
from melasma.ui.app import GUEST, ensure_demo_data, hf_username, launch_options, oauth_enabled
from waiting import wait_until

pytestmark = pytest.mark.live

REPO = Path(__file__).resolve().parents[1]
API_NAMES = {
    "/ingest", "/next_image", "/submit_rating", "/agreement", "/export",
    "/start_training", "/training_status", "/cancel_training", "/predict", "/explain",
}


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MELASMA_", "GRADIO_", "SPACE_"))}
    env["PYTHONPATH"] = str(REPO)
    env.update(extra)
    return env


def test_import_app_has_no_side_effects(tmp_path: Path) -> None:
    code = "import json, sys, app; print(json.dumps(sorted(m for m in ('gradio', 'torch') if m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=_env(), capture_output=True,
                         text=True, timeout=60, check=True)
    assert json.loads(out.stdout) == []  # nothing heavy imported, so nothing launched or loaded
    assert list(tmp_path.iterdir()) == []  # no data folder, no demo set written


def test_flags_override_environment() -> None:
    env = {"MELASMA_DATA_DIR": "/srv/env", "MELASMA_RATERS": "x,y", "MELASMA_AUTH": "x:1,y:2"}
    parser = argparse.ArgumentParser()
    serve_cli.add_arguments(parser)
    from_env = serve_cli.settings_from_args(parser.parse_args([]), env)
    assert (from_env.data_dir, from_env.raters) == (Path("/srv/env"), ("x", "y"))
    args = parser.parse_args(["--data-dir", "/srv/flag", "--raters", "a,b,c", "--auth", "a:p"])
    settings = serve_cli.settings_from_args(args, env)
    assert settings.data_dir == Path("/srv/flag")
    assert settings.raters == ("a", "b", "c")
    assert settings.auth == (("a", "p"),)
    assert launch_options(settings, oauth=False)["auth"] == [("a", "p")]
    with pytest.raises(ValueError, match="choose one sign-in"):
        launch_options(settings, oauth=True)


@pytest.mark.parametrize(("command", "flags", "message"), [
    (["-m", "melasma", "serve"], ["--auth", "nopassword"],
     "error: MELASMA_AUTH entries must look like user:password, got 'nopassword'"),
    (["app.py"], ["--port", "70000"], "app.py: error: argument --port: a port must be from 1 to 65535, got 70000"),
], ids=["serve-auth", "app-port"])
def test_bad_settings_fail_in_one_line(tmp_path: Path, command: list[str], flags: list[str], message: str) -> None:
    out = subprocess.run([sys.executable, *command, *flags, "--data-dir", str(tmp_path)], cwd=REPO,
                         env=_env(), capture_output=True, text=True, timeout=60)
    # argparse's usage lines may come first; the error is the last line, with no traceback
    assert (out.returncode, out.stderr.strip().splitlines()[-1]) == (2, message)
    assert "Traceback" not in out.stderr
    assert list(tmp_path.iterdir()) == []  # failed before anything was written


def _serving(proc: subprocess.Popen[str], url: str) -> bool:
    """Whether app.py answers `url` (an AssertionError with its output once it has exited)."""
    assert proc.poll() is None, f"app.py exited early:\n{proc.stdout.read() if proc.stdout else ''}"
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def test_python_app_py_first_start(tmp_path: Path) -> None:
    """`python app.py` on an empty data folder: demo set written, GRADIO_SERVER_PORT honoured."""
    port = free_port()
    data = tmp_path / "data"
    env = _env(GRADIO_SERVER_PORT=str(port), MELASMA_DATA_DIR=str(data))
    proc = subprocess.Popen([sys.executable, "app.py", "--raters", "ana,ben,cy"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_until(lambda: _serving(proc, url), f"app.py to serve {url}", interval_s=0.5)
        with open(data / "demo" / "labels.csv") as handle:
            assert sum(1 for _ in csv.DictReader(handle)) == 60
        client = Client(url, verbose=False, download_files=False)
        assert API_NAMES <= set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
        _, _, status = client.predict("ben", api_name="/next_image")  # the --raters flag is in force
        assert "ben" in status
        with pytest.raises(Exception, match=r"rater1 is not in the list of choices: \['ana', 'ben', 'cy'\]"):
            client.predict("rater1", api_name="/next_image")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_demo_data_is_generated_once(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    labels = ensure_demo_data(settings)
    assert labels == settings.demo_dir / "labels.csv"
    first = labels.stat().st_mtime_ns
    assert len(list((settings.demo_dir / "images").glob("*.jpg"))) == 60
    assert ensure_demo_data(settings).stat().st_mtime_ns == first


def test_oauth_is_a_spaces_option() -> None:
    assert oauth_enabled(Settings.from_env({})) is False
    assert oauth_enabled(Settings.from_env({"SPACE_ID": "me/studio"})) is False
    assert oauth_enabled(Settings.from_env({"MELASMA_OAUTH": "1", "SPACE_ID": "me/studio"})) is True
    with pytest.raises(ValueError, match="only on a Hugging Face Space"):
        oauth_enabled(Settings.from_env({"MELASMA_OAUTH": "true"}))


def test_oauth_username_from_session() -> None:
    signed_in = Request({"type": "http", "session": {"oauth_info": {"userinfo": {"preferred_username": "dr_a"}}}})
    assert hf_username(signed_in) == "dr_a"
    assert hf_username(Request({"type": "http", "session": {}})) == GUEST
    assert hf_username(Request({"type": "http"})) == GUEST


def test_live_app_layout_api_and_private_files(tmp_path: Path) -> None:
    with live_app(tmp_path) as (url, client):
        config = httpx.get(f"{url}config").json()
        labels = [c["props"].get("label") for c in config["components"] if c["type"] == "tabitem"]
        assert [name for name in labels if name in ("Annotate", "Train", "Predict")] == ["Annotate", "Train", "Predict"]
        assert "loginbutton" not in {c["type"] for c in config["components"]}  # no OAuth by default
        endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
        assert API_NAMES <= set(endpoints)
        photo = min((tmp_path / "demo" / "images").glob("*.jpg")).resolve()  # a Predict example
        assert httpx.get(f"{url}gradio_api/file={photo}").status_code == 200
        database = (tmp_path / "annotations.sqlite").resolve()
        assert database.is_file()
        assert httpx.get(f"{url}gradio_api/file={database}").status_code in (403, 404)


def test_password_sign_in_sets_the_rater(tmp_path: Path) -> None:
    auth = (("rater1", "pw-one"), ("rater2", "pw-two"))
    with live_app(tmp_path, raters=("rater1", "rater2"), auth=auth, client_auth=("rater2", "pw-two")) as (url, client):
        _, _, status = client.predict(None, api_name="/next_image")
        assert "rater2" in status
        with pytest.raises(Exception, match="signed in as 'rater2'"):
            client.predict("rater1", api_name="/next_image")
        assert httpx.get(f"{url}config").status_code == 401  # nothing served without signing in
