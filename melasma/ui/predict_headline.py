"""What Predict puts at the top: a severity only where the checkpoint has earned it.

No face found: no severity at all (the CNN's output on a wall means nothing). A checkpoint that has
not cleared its real-photo check (`melasma.real_photo_check`): the caution first, then the class in
plain text as a demonstration of the method, never as the large headline. A checked checkpoint on a
face: the class with its probabilities as the headline.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from melasma.real_photo_check import RealPhotoCheck, caution

NO_FACE = "No severity is shown: without a face the CNN's output means nothing."


@dataclass(frozen=True)
class Headline:
    """Whether the severity label is shown (`show_label`), and the Markdown above the rest (`notice`)."""

    show_label: bool
    notice: str


def demonstration(probabilities: Mapping[str, float]) -> str:
    """The class as a demonstration line: the top class in bold, every probability in per cent."""
    top = max(probabilities, key=lambda name: probabilities[name])
    shares = ", ".join(f"{name} {share:.0%}" for name, share in probabilities.items())
    return f"Demonstration of the method, not a grade: the CNN's class is **{top}** ({shares})."


def headline(probabilities: Mapping[str, float], *, face_found: bool, face_notice: str,
             check: RealPhotoCheck | None) -> Headline:
    """The top of the Predict page for one photo (see the module doc)."""
    if not face_found:
        return Headline(False, "\n\n".join(filter(None, ["### No face found", face_notice, NO_FACE])))
    note = f"Note: {face_notice}" if face_notice else ""
    if check is not None and check.passes:
        return Headline(True, "\n\n".join(filter(None, [note, caution(check)])))
    return Headline(False, "\n\n".join(filter(None, [caution(check), demonstration(probabilities), note])))
