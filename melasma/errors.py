"""The one base type of the project's refusals: what a user sent (a flag, a form field, a photo, a data
set, a checkpoint, a setting) cannot be used, and the message says why.

The CLI shows a `UserError` as one `error:` line, the app's handlers as a pop-up with its text; any other
ValueError is a bug and keeps its traceback. It imports nothing of the project, so every layer may use it.
"""

from __future__ import annotations


class UserError(ValueError):
    """A refusal a person can act on; the message is for them (no traceback is shown). A ValueError,
    so callers that catch ValueError keep working."""
