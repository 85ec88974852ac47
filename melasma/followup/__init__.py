"""Longitudinal follow-up: a patient's visits from the rater store, response to treatment (change
from baseline, MASI-50 / MASI-75), before/after alignment, timeline figures and exports."""

from melasma.followup.outcomes import CohortWindow, Outcome, cohort_responders, outcome
from melasma.followup.visits import FollowupError, Patient, Visit, load_patients, patient_timeline

__all__ = [
    "CohortWindow", "FollowupError", "Outcome", "Patient", "Visit", "cohort_responders",
    "load_patients", "outcome", "patient_timeline",
]
