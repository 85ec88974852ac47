"""The one error decorator of the tabs (melasma.ui.components.user_errors): refusals become gr.Error
with the plain message, programming errors propagate and are logged, signatures stay Gradio-readable."""

from __future__ import annotations

import inspect
import logging

import gradio as gr
import pytest

from annotation.store import UnknownRaterError
from melasma.access import AccessDenied
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


def test_programming_errors_propagate_and_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="melasma.ui.components"), pytest.raises(KeyError):
        user_errors(refuse)(KeyError("summary"))
    assert "refuse failed" in caplog.text and "KeyError" in caplog.text


def test_the_wrapper_keeps_what_gradio_reads() -> None:
    def handler(job_id: str, request: gr.Request) -> dict[str, object]:
        """State of a job."""
        return {"job_id": job_id}

    wrapped = user_errors(handler)
    assert inspect.signature(wrapped) == inspect.signature(handler)
    assert wrapped.__doc__ == handler.__doc__ and wrapped("j", None) == {"job_id": "j"}
