"""Statistics shared by several layers above (rater agreement: `agreement`)."""
