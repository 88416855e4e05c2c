"""report: collect results.json files into tables (and the multirun summary)."""

from mbdef.report.summary import SweepSummary, collect, summary_rows, table_text

__all__ = ["SweepSummary", "collect", "summary_rows", "table_text"]
