"""What the Annotate tab says to people: form messages, result sentences, the agreement summary and
the coordinator's tables. Pure functions (no Gradio), so they are tested without a server."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import pandas as pd

from annotation.agreement import MachineAgreement
from annotation.store import SCORE_FIELDS, Adjudication, Rating
from annotation.workflow import ConsensusRow, Submission
from melasma.masi import CLEAR, REGIONS, SEVERITIES, shown_class

#: Regions as the patient's sides: the patient's right cheek is on the viewer's left.
REGION_LABELS: dict[str, str] = {
    "forehead": "forehead", "right_malar": "patient's right cheek",
    "left_malar": "patient's left cheek", "chin": "chin",
}
ITEM_NOUNS: dict[str, str] = {"area": "an area", "darkness": "a darkness", "homogeneity": "a homogeneity"}


def fill_zero_areas(values: Sequence[int | None]) -> list[int | None]:
    """Area 0 means no lesion: that region's darkness and homogeneity become 0 (no clicks needed)."""
    filled = list(values)
    for start in range(0, len(filled) - 2, 3):
        if filled[start] == 0:
            filled[start + 1] = filled[start + 1] if filled[start + 1] is not None else 0
            filled[start + 2] = filled[start + 2] if filled[start + 2] is not None else 0
    return filled


def fill_hidden(values: Sequence[int | None], hidden: Sequence[str]) -> list[int | None]:
    """Regions marked "not visible" need no scores: theirs become 0."""
    filled = list(values)
    for index, (region, _) in enumerate(SCORE_FIELDS):
        if region in hidden:
            filled[index] = 0
    return filled


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def missing_message(values: Sequence[int | None]) -> str | None:
    """One sentence naming every score still to choose, by region, or None when all 12 are there."""
    by_region: dict[str, list[str]] = {}
    for (region, item), value in zip(SCORE_FIELDS, values):
        if value is None:
            by_region.setdefault(region, []).append(ITEM_NOUNS[item])
    if not by_region:
        return None
    parts = [f"{_join(items)} for the {REGION_LABELS[region]}" for region, items in by_region.items()]
    return "Choose " + "; ".join(parts) + "."


def result_sentence(result: Submission, *, next_ready: bool = True) -> str:
    """The rater's own result as a sentence, and whether another photo waits for them."""
    verb = "Saved your new scores for" if result.revised else "Saved your rating of"
    after = "The next photo is ready." if next_ready else "No photos are left for you to rate."
    return (f"{verb} this photo: MASI {result.masi:.1f} ({shown_class(result.masi)}), "
            f"mMASI {result.mmasi:.1f}. {after}")


def _icc(entry: dict[str, float | None]) -> str:
    if entry["icc"] is None:
        return "n/a (no variance)"
    if entry["ci_low"] is None or entry["ci_high"] is None:
        note = "perfect agreement, " if entry["icc"] == 1 else ""
        return f"{entry['icc']:.3f} ({note}95% CI n/a)"
    return f"{entry['icc']:.3f} (95% CI {entry['ci_low']:.3f} to {entry['ci_high']:.3f})"


def _stat(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def report_markdown(report: dict[str, Any]) -> str:
    """The agreement dashboard as Markdown; holds for perfect agreement (ICC 1, no CI)."""
    lines = [(f"**{report['complete']} of {report['images']} photos fully rated** "
             f"({report['ratings_per_image']} ratings each).")]
    if report.get("synthetic_photos"):
        lines.insert(0, f"⚠️ **{report['synthetic_photos']} of {report['images']} photos are synthetic** (cartoon "
                        "faces written by `synth`, rated by simulated raters): they count in every number below.\n")
    if "masi_icc" in report:
        lines += ["", "| statistic | value |", "|---|---|",
                  f"| MASI ICC(2,1), single rater | {_icc(report['masi_icc']['2,1'])} |",
                  f"| MASI ICC(2,k), mean of raters | {_icc(report['masi_icc']['2,k'])} |"]
        lines += [f"| {REGION_LABELS[r].capitalize()} ICC(2,1) of A x (D + H) | {_icc(e)} |"
                  for r, e in report["region_icc"].items()]
        bins = report["bins"]
        lines += [f"| severity bins: mean quadratic-weighted kappa | {_stat(bins['weighted_kappa'])} |",
                  f"| severity bins: Krippendorff's alpha (ordinal) | {_stat(bins['krippendorff_alpha'])} |",
                  f"| severity bins: Fleiss' kappa (nominal) | {_stat(bins.get('fleiss_kappa'))} |"]
    else:
        lines.append(report["note"])
    lines += ["", "| rater | rated | still open |", "|---|---|---|"]
    lines += [f"| {name} | {p['rated']} | {p['remaining']} |" for name, p in report["progress"].items()]
    queue = report["adjudication_queue"]
    lines += ["", f"**Adjudication queue: {len(queue)} photo(s)** (resolve them under *Adjudicate*)"]
    lines += [f"- `{item['image_id']}` MASI {item['masi']:.1f}: {'; '.join(item['reasons'])}"
              for item in queue]
    return "\n".join(lines)


def machine_markdown(result: MachineAgreement) -> str:
    """The machine rater's agreement with the consensus, in words a coordinator can act on."""
    if result.icc is None:
        return (f"**Image-derived MASI:** {result.compared} fully rated photo(s) have a machine score "
                f"({result.without_score} without a usable face); agreement needs at least 2.")
    return "\n".join([
        (f"**Image-derived MASI vs the raters' consensus** on {result.compared} fully rated photos "
        f"({result.without_score} without a usable face are left out):"), "",
        "| statistic | value |", "|---|---|",
        f"| ICC(2,1), absolute agreement | {result.icc:.2f} (95% CI {_stat(result.ci_low)} to {_stat(result.ci_high)}) |",
        f"| Pearson r | {_stat(result.pearson_r)} |",
        f"| bias (machine - consensus) | {_stat(result.bias)} |",
        f"| mean absolute difference | {_stat(result.mae)} |", "",
        "The machine rater is the region analysis (melasma.regions), not the CNN; raters never see it."])


VISITOR_ONLY_BANNER = (
    "**Visitor-only mode:** this server can be reached from other machines and nobody signs in, so "
    "everyone is a visitor and may use **Predict** only. To annotate, its operator sets "
    "`MELASMA_AUTH=name:password,...` (passwords) or `MELASMA_OAUTH=1` with `hf_oauth: true` (Hugging "
    "Face sign-in on a Space), and `MELASMA_COORDINATORS` / `MELASMA_RATERS`; see "
    "docs/roles-and-privacy.md."
)
PHOTO_COLUMNS = ("photo", "patient", "visit", "ratings", "consensus MASI", "bin", "spread", "status", "id")
#: How the Photos table shows each of those columns: the photo cell is markdown, the rest plain text.
PHOTO_DATATYPES: list[Literal["markdown", "str"]] = ["markdown", "str", "str", "str", "str", "str", "str", "str", "str"]


def photo_table(
    images: Sequence[Any], counts: dict[str, int], rows: dict[str, ConsensusRow], needed: int,
    thumbnails: dict[str, str],
) -> pd.DataFrame:
    """The coordinator's per-photo table (thumbnail as Markdown, consensus only once closed)."""
    records = []
    for image in images:
        row = rows.get(image.id)
        records.append({
            "photo": f"![photo]({thumbnails[image.id]})" if image.id in thumbnails else "",
            "patient": image.patient_id or "", "visit": image.visit_date or "",
            "ratings": f"{counts.get(image.id, 0)} of {needed}",
            "consensus MASI": round(row.label_masi, 1) if row else None,
            "bin": shown_class(row.label_masi) if row else "",
            "spread": round(row.consensus.spread, 1) if row else None,
            "status": row.status if row else "open", "id": image.id,
        })
    return pd.DataFrame(records, columns=list(PHOTO_COLUMNS))


def scores_table(ratings: Sequence[Rating]) -> pd.DataFrame:
    """Every rater's scores of one closed photo: a row per rater, A/D/H per region and MASI."""
    records = []
    for rating in ratings:
        record: dict[str, object] = {"rater": rating.rater}
        for region in REGIONS:
            s = rating.scores[region]
            record[REGION_LABELS[region]] = f"A{s['area']} D{s['darkness']} H{s['homogeneity']}"
        record["MASI"] = rating.masi
        record["revision"] = rating.revision
        records.append(record)
    return pd.DataFrame(records)


#: The adjudication log's columns.
DECISION_COLUMNS: tuple[str, ...] = ("when (UTC)", "coordinator", "decision", "MASI before", "MASI after", "reason",
                                     "photo")


def _one_decimal(value: float | None) -> float | None:
    return None if value is None else round(float(value), 1)


def decisions_table(decisions: Sequence[Adjudication]) -> pd.DataFrame:
    """The adjudication log: who decided what, when, and why."""
    return pd.DataFrame(
        [{"when (UTC)": d.decided_at[:19].replace("T", " "), "coordinator": d.coordinator,
          "decision": ("adjudicated MASI" if d.action == "adjudicate" else f"asked {d.rater} to re-rate"),
          "MASI before": _one_decimal(d.old_masi), "MASI after": _one_decimal(d.new_masi), "reason": d.reason, "photo": d.image_id}
         for d in decisions],
        columns=list(DECISION_COLUMNS),
    )


def class_counts_markdown(counts: dict[str, int], warnings: Sequence[str], clear: int = 0) -> str:
    """Class counts of the set an export would write (and how many of the mild ones are clear), and
    why it could not train (if so)."""
    line = " · ".join(f"**{name}** {counts.get(name, 0)}" for name in SEVERITIES)
    text = f"Photos ready to export by severity: {line}."
    if clear:
        text += (f" {clear} of the mild photos are **{CLEAR}**, MASI 0: the manifest marks them in its "
                 "`clear` column, and the Train tab can leave them out.")
    if warnings:
        text += "\n\n" + "\n".join(f"- ⚠️ {w}" for w in warnings)
    return text
