"""Reports: terminal tables, report.md / report.json and PNG plots."""
