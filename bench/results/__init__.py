"""The suite's tidy results format: one row per measurement, written atomically.

Every harness writes `measurements.csv` with the columns of `schema.Row`. A row names the measured
model and metric, the value with its unit and statistic, and the full context it was measured in.
Rows of one matrix cell share a `cell` key; `store.MeasurementStore.done_cells` lets an interrupted
run resume.

One job per module, imported from there: `schema` (the row and its columns), `keys` (cell keys and
the migration of older ones), `store` (reading and atomically rewriting measurements.csv), `damage`
(refusing rows and files that cannot be trusted) and `paths` (output paths checked before any
measuring).
"""
