"""The `leadflow` command (main) and its offline commands: replay, report, review, calibrate, CSV import, schema
files, and the HTML pages they write."""
