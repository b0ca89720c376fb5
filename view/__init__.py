"""``lbi view``: a static HTML report of an evaluation or a synthesis output folder."""

from lbi.view.report import write_report

__all__ = ["write_report"]
