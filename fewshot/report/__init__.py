"""A static HTML report of result records: table, distributions, paired differences, ablations, learning
curves and provenance in one page readable offline (fewshot/report/build.py)."""
from fewshot.report.build import build_report, load_report_records, report_from_paths

__all__ = ["build_report", "load_report_records", "report_from_paths"]
