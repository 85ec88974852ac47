"""Roles from settings: who is coordinator, rater, visitor in each sign-in mode."""

from __future__ import annotations

import pytest

from melasma.access import AccessDenied, Role, require, require_rater, role_of, train_role
from melasma.settings import Settings

PASSWORDS = Settings.from_env({"MELASMA_AUTH": "boss:pw,ann:pw,bob:pw,eve:pw", "MELASMA_COORDINATORS": "boss",
                               "MELASMA_RATERS": "ann,bob"})
OAUTH = Settings.from_env({"MELASMA_OAUTH": "1", "MELASMA_COORDINATORS": "boss", "MELASMA_RATERS": "ann,bob"})
LOCAL = Settings.from_env({})


@pytest.mark.parametrize("settings", [PASSWORDS, OAUTH], ids=["passwords", "oauth"])
def test_roles_come_from_settings_in_both_sign_in_modes(settings: Settings) -> None:
    assert role_of("boss", settings) is Role.COORDINATOR
    assert role_of("ann", settings) is Role.RATER
    assert role_of("eve", settings) is Role.VISITOR
    assert role_of(None, settings) is Role.VISITOR
    require(Role.COORDINATOR, "boss", settings)
    require(Role.RATER, "boss", settings)
    with pytest.raises(AccessDenied, match="only a coordinator"):
        require(Role.COORDINATOR, "ann", settings)
    with pytest.raises(PermissionError):
        require(Role.RATER, "eve", settings)


def test_local_mode_is_one_coordinator_who_rates_as_any_rater() -> None:
    assert role_of(None, LOCAL) is Role.COORDINATOR
    assert require_rater(None, "rater2", LOCAL) == "rater2"
    with pytest.raises(AccessDenied, match="not one of the raters"):
        require_rater(None, "mallory", LOCAL)


def test_signed_in_rater_rates_only_as_themselves() -> None:
    assert require_rater("ann", None, PASSWORDS) == "ann"
    with pytest.raises(AccessDenied, match="cannot rate as"):
        require_rater("ann", "bob", PASSWORDS)
    with pytest.raises(AccessDenied, match="not one of the raters"):
        require_rater("boss", None, PASSWORDS)
    with pytest.raises(AccessDenied, match="sign in"):
        require_rater(None, "ann", OAUTH)


def test_coordinators_are_not_raters_by_default_and_training_needs_a_coordinator() -> None:
    assert Settings.from_env({"MELASMA_AUTH": "boss:pw,ann:pw", "MELASMA_COORDINATORS": "boss"}).raters == ("ann",)
    assert train_role(PASSWORDS) is Role.COORDINATOR
    open_training = Settings.from_env({"MELASMA_OAUTH": "1", "MELASMA_VISITORS_CAN_TRAIN": "1"})
    assert train_role(open_training) is Role.VISITOR
    with pytest.raises(ValueError, match="choose one sign-in"):
        Settings.from_env({"MELASMA_OAUTH": "1", "MELASMA_AUTH": "a:b"})


def test_annotate_tab_names_the_role_and_shows_only_its_screens(tmp_path) -> None:
    import gradio as gr

    from melasma.ui.annotate import build_annotate_tab

    settings = Settings.from_env({"MELASMA_AUTH": "boss:pw,ann:pw,eve:pw", "MELASMA_COORDINATORS": "boss",
                                  "MELASMA_RATERS": "ann", "MELASMA_DATA_DIR": str(tmp_path)})
    with gr.Blocks():
        tab = build_annotate_tab(settings)
    visible = {}
    for user in ("boss", "ann", "eve"):
        shown = tab.welcome(gr.Request(username=user))
        visible[user] = (shown[tab.tabs["annotate-rate"]].visible,
                         [shown[t].visible for key, t in tab.tabs.items() if key != "annotate-rate"])
        assert f"Signed in as **{user}**" in shown[tab.banner]
    assert visible == {"boss": (False, [True] * 5), "ann": (True, [False] * 5), "eve": (False, [False] * 5)}
    with gr.Blocks():
        local = build_annotate_tab(Settings(data_dir=tmp_path / "local"))
    assert "Local single-user mode" in local.welcome(gr.Request(username=None))[local.banner]
