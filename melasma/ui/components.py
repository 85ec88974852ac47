"""Gradio components and handler helpers the tabs share.

Gradio writes a `.pyi` stub beside any module that defines a component (ignored by git).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import gradio as gr
import numpy as np
from gradio.data_classes import ImageData
from gradio.utils import get_upload_folder
from PIL import Image

from melasma.access import AccessDenied
from melasma.errors import UserError

#: What the project raises for a refusal a user can act on: every data, model, job and annotation error
#: is a UserError (DatasetError, CheckpointError, LimitError, AnnotationError, ...) and the role checks
#: raise AccessDenied. Any other ValueError is a bug: logged with its traceback, not shown as a refusal.
USER_ERRORS: tuple[type[Exception], ...] = (UserError, AccessDenied)

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")


def _outage(error: BaseException) -> bool:
    """A database that does not answer: our DatabaseUnavailable (a ConnectionError), or a driver's
    OperationalError (PostgreSQL's AdminShutdown and lost connections, SQLite's "database is locked")."""
    return isinstance(error, ConnectionError) or any(
        kind.__name__ == "OperationalError" for kind in type(error).__mro__)


def unexpected_message(error: BaseException) -> str:
    """What a person is told about an error that is not one of the project's refusals: what to do,
    and the error's type only (never its text, which may hold paths or internals)."""
    kind = type(error).__name__
    if _outage(error):
        return (f"the database is not answering ({kind}): try again in a minute; if it goes on, tell the "
                "server's operator. A change you were not shown as saved was not saved.")
    return (f"the server could not handle this request ({kind}): check what was sent (a photo, the "
            "fields' values) and try again; the operator finds the details in the server log")


def user_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Wrap a Gradio handler: the project's refusals (`USER_ERRORS`) become a gr.Error pop-up with the
    plain one-line message; a gr.Error passes through; anything else is logged with its traceback
    and answered with `unexpected_message` (what to do, the error's type, never its details), so no
    client ever gets an error without a message."""
    if getattr(fn, "user_errors", False):
        return fn
    # A callable object's metadata is its __call__'s: Gradio reads the wrapper's type hints (through
    # __wrapped__) to inject gr.Request, and an object's own annotations (its fields) would hide them.
    described = fn if inspect.isfunction(fn) or inspect.ismethod(fn) else fn.__call__  # type: ignore[operator]

    @functools.wraps(described)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except USER_ERRORS as error:
            raise gr.Error(str(error), print_exception=False) from None
        except Exception as error:
            log.exception("handler %s failed", getattr(fn, "__qualname__", fn))
            raise gr.Error(unexpected_message(error), print_exception=False) from None

    wrapper.user_errors = True  # type: ignore[attr-defined]
    return wrapper


def wrap_every_handler(demo: gr.Blocks) -> int:
    """Put `user_errors` around every event handler of `demo` that lacks it (chained `.success` /
    `.then` steps, lambdas, page loads), so that no handler answers without a message; generator and
    async handlers are left as they are. Returns how many were wrapped."""
    wrapped = 0
    for block_fn in demo.fns.values():
        fn = block_fn.fn
        if fn is None or getattr(fn, "user_errors", False) or inspect.isgeneratorfunction(fn) \
                or inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
            continue
        block_fn.fn = user_errors(fn)
        wrapped += 1
    return wrapped


class PhotoInput(gr.Image):
    """A gr.Image whose uploads reach the handler as an unopened file path, so the data layer
    decodes them (EXIF, every mode, pixel cap) and names the file in a clear error. gr.Image's own
    preprocessing opens every upload, fully decodes non-RGB ones and fails with a generic error."""

    is_template = True  # rendered by the frontend's Image component

    def preprocess(self, payload: ImageData | None) -> np.ndarray | Image.Image | str | None:
        if payload is not None and payload.path and not (payload.url or "").startswith("data:"):
            return str(payload.path)
        return super().preprocess(payload)


class PhotoStage:
    """Copies of private files (stored photos, exports) in a temporary folder of their own, handed to
    Gradio for display or download. The data folder's photos/ and exports/ are never served by URL
    (see ``ui.app.private_files``); the copies live under random names in Gradio's upload folder
    (so a table can link a thumbnail) and are removed after ``keep_s`` seconds."""

    def __init__(self, keep_s: float = 900.0) -> None:
        Path(get_upload_folder()).mkdir(parents=True, exist_ok=True)
        self.folder = Path(tempfile.mkdtemp(prefix="melasma-stage-", dir=get_upload_folder()))
        self.keep_s = keep_s

    def __call__(self, source: Path, name: str | None = None) -> str:
        """A fresh copy of `source` (named `name`, default its own name); returns its path."""
        self._prune()
        target = self.folder / uuid.uuid4().hex / (name or source.name)
        target.parent.mkdir()
        shutil.copyfile(source, target)
        return str(target)

    def thumbnail(self, source: Path, size: int = 160) -> str:
        """A small JPEG copy of the photo `source` (for tables and galleries)."""
        self._prune()
        target = self.folder / uuid.uuid4().hex / source.name
        target.parent.mkdir()
        with Image.open(source) as image:
            image.thumbnail((size, size))
            image.convert("RGB").save(target, format="JPEG", quality=85)
        return str(target)

    def _prune(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)  # Gradio may have emptied its cache
        cutoff = time.time() - self.keep_s
        for folder in self.folder.iterdir():
            if folder.stat().st_mtime < cutoff:
                shutil.rmtree(folder, ignore_errors=True)


def delete_uploads(paths: list[str]) -> int:
    """Delete Gradio's temporary copies of uploaded files (only inside its upload folder); returns
    how many were deleted. Raw uploads keep GPS and camera metadata: once the clean copy is stored
    they must not stay behind, served by URL."""
    root = Path(get_upload_folder()).resolve()
    deleted = 0
    for raw in paths:
        path = Path(raw).resolve()
        if path.is_file() and path.is_relative_to(root):
            path.unlink()
            deleted += 1
            with contextlib.suppress(OSError):
                path.parent.rmdir()  # Gradio keeps each upload in a folder of its own
    return deleted


#: What a handler returns to show something: the new value (or a component update, or `gr.skip()`) of
#: each component it changes, keyed by component; the event's outputs list every key it may use.
Shown = dict[gr.blocks.Block, Any]
