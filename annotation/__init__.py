"""Blinded multi-rater MASI annotation: rater store (SQLite or PostgreSQL), ingest, workflow, agreement,
export, plots.

Modules: `store` (RatingStore, errors), `db` (the two database engines, schema, migrate),
`ingest` (photos and zips -> content-hash ids), `workflow` (RatingPolicy: raters, k, spread threshold,
cut-offs, no dependency on the app's Settings; Workflow: next image, submit / revise, consensus,
adjudication queue), `agreement` (ICC forms with confidence intervals, weighted kappa,
Krippendorff's alpha, dashboard numbers), `export` (training manifest and long-format ratings
CSVs), `plots` (rater-vs-rater scatter).
"""
