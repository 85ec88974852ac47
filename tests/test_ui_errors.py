"""The one error decorator of the tabs (melasma.ui.components.user_errors): refusals become gr.Error
with the plain message, programming errors propagate and are logged, signatures stay Gradio-readable."""

from __future__ import annotations

import inspect
import logging
from pathlib import Path

import gradio as gr
import pytest

from annotation.store import UnknownRaterError
from melasma.access import AccessDenied
from melasma.errors import UserError
from melasma.jobs.limits import LimitError
from melasma.ui.components import user_errors


def refuse(error: Exception) -> None:
    raise error


@pytest.mark.parametrize("error", [LimitError("image size 1024 px is above this server's limit"),
                                   AccessDenied("only a coordinator may do this"),
                                   UnknownRaterError("unknown rater 'zed'")])
def test_refusals_become_a_plain_gr_error(error: Exception) -> None:
    with pytest.raises(gr.Error) as raised:
        user_errors(refuse)(error)
    assert raised.value.message == str(error)
    assert raised.value.print_exception is False and raised.value.__cause__ is None


def test_a_gr_error_passes_through_unchanged() -> None:
    original = gr.Error("Upload a photo first.", duration=3)
    with pytest.raises(gr.Error) as raised:
        user_errors(refuse)(original)
    assert raised.value is original


def test_programming_errors_are_logged_and_answered_with_a_message(caplog: pytest.LogCaptureFixture) -> None:
    """Issue 30: no `error: null`: the client learns what to do and the error's type, not its text."""
    with caplog.at_level(logging.ERROR, logger="melasma.ui.components"), pytest.raises(gr.Error) as raised:
        user_errors(refuse)(KeyError("/secret/path/summary"))
    assert "refuse failed" in caplog.text and "KeyError" in caplog.text
    assert "(KeyError)" in raised.value.message and "try again" in raised.value.message
    assert "/secret/path" not in raised.value.message


@pytest.mark.parametrize("bug", [ValueError("operands could not be broadcast together with shapes (3,) (4,)"),
                                 PermissionError(13, "Permission denied", "/srv/data/runs")])
def test_a_value_error_that_is_no_refusal_keeps_its_traceback(bug: Exception,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    """Issue 28: a numpy / torch / pandas ValueError (or the disk's PermissionError) is a bug or an outage,
    not the user's fault: logged with its traceback, answered with the generic message, never its text."""
    with caplog.at_level(logging.ERROR, logger="melasma.ui.components"), pytest.raises(gr.Error) as raised:
        user_errors(refuse)(bug)
    record = next(r for r in caplog.records if r.name == "melasma.ui.components")
    assert record.exc_info is not None and record.exc_info[1] is bug
    assert f"({type(bug).__name__})" in raised.value.message and "could not handle this request" in raised.value.message
    assert str(bug) not in raised.value.message


def test_a_user_error_is_the_refusal_shown_as_it_is() -> None:
    with pytest.raises(gr.Error) as raised:
        user_errors(refuse)(UserError("MELASMA_MAX_UPLOAD_MB must be a whole number, got 'abc'"))
    assert raised.value.message == "MELASMA_MAX_UPLOAD_MB must be a whole number, got 'abc'"


def test_a_database_outage_says_so() -> None:
    import sqlite3

    import psycopg.errors

    from annotation.db.engines import DatabaseUnavailable

    for error in (psycopg.errors.AdminShutdown("terminating connection due to administrator command"),
                  psycopg.OperationalError("server closed the connection unexpectedly"),
                  sqlite3.OperationalError("database is locked"), DatabaseUnavailable("cannot open")):
        with pytest.raises(gr.Error, match="the database is not answering") as raised:
            user_errors(refuse)(error)
        assert f"({type(error).__name__})" in raised.value.message


def test_every_handler_of_the_app_carries_the_wrapper(tmp_path: Path) -> None:
    """`.success` / `.then` steps and lambdas included (issue 30: 70 refusals had no message)."""
    from melasma.settings import Settings
    from melasma.ui.app import build_app

    demo = build_app(Settings(data_dir=tmp_path))
    handlers = [fn.fn for fn in demo.fns.values() if fn.fn is not None]
    assert len(handlers) > 40
    assert all(getattr(fn, "user_errors", False) or inspect.isgeneratorfunction(fn) for fn in handlers)
    table_step = next(fn for fn in handlers if fn.__name__ == "_ingest_table")  # the ingest summary's table step
    with pytest.raises(gr.Error, match="could not handle this request"):
        table_step("not a summary")  # what an API caller can send to a private step


def test_the_wrapper_keeps_what_gradio_reads() -> None:
    def handler(job_id: str, request: gr.Request) -> dict[str, object]:
        """State of a job."""
        return {"job_id": job_id}

    wrapped = user_errors(handler)
    assert inspect.signature(wrapped) == inspect.signature(handler)
    assert wrapped.__doc__ == handler.__doc__ and wrapped("j", None) == {"job_id": "j"}


def test_every_handler_of_the_app_gets_what_gradio_injects(tmp_path: Path) -> None:
    """Each positional parameter beyond the event's inputs must carry a type hint Gradio resolves to one it
    injects (gr.Request, gr.SelectData, ...): an unresolvable hint left the signed-in user's request None
    for the page-load Landing (wrapped as an object, its dataclass fields' annotations hid __call__'s)."""
    from gradio import utils

    from melasma.settings import Settings
    from melasma.ui.app import build_app

    demo = build_app(Settings(data_dir=tmp_path, auth=(("boss", "pw"), ("ann", "pw")), coordinators=("boss",),
                              raters=("ann", "bob")))
    starved = []
    for block_fn in demo.fns.values():
        if block_fn.fn is None:
            continue
        hints = utils.get_type_hints(block_fn.fn)
        positional = [p for p in inspect.signature(block_fn.fn).parameters.values()
                      if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty]
        injected = [p for p in positional if utils.is_special_typed_parameter(p.name, hints)]
        if len(positional) - len(injected) > len(block_fn.inputs):
            starved.append(f"{block_fn.name}: {[p.name for p in positional]} from {len(block_fn.inputs)} inputs")
    assert not starved


def test_a_signed_in_rater_keeps_the_first_tab_through_gradio(tmp_path: Path) -> None:
    """The page-load handler as Gradio calls it (special_args injects the request), not called by hand."""
    from gradio.helpers import special_args

    from melasma.settings import Settings
    from melasma.ui.landing import PREDICT_TAB, Landing

    settings = Settings(data_dir=tmp_path, auth=(("boss", "pw"), ("ann", "pw"), ("eve", "pw")), coordinators=("boss",),
                        raters=("ann", "bob"))
    handler = user_errors(Landing(settings))
    for user, lands_on_predict in (("ann", False), ("boss", False), ("eve", True)):
        arguments, *_ = special_args(handler, [], gr.Request(username=user))
        chosen = handler(*arguments)
        assert (isinstance(chosen, gr.Tabs) and chosen.selected == PREDICT_TAB) is lands_on_predict, user
