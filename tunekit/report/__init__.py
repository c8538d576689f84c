"""Run reports: each plot's data first (plain values), then one self-contained plotly HTML file;
and ``diagnose``, which reads the learning curves and names what they show.

``html_page`` is the page every report is drawn on (run, study and sanity reports)."""

from typing import TYPE_CHECKING

from tunekit._lazy import attach

if TYPE_CHECKING:
    from ._data import (
        ActivationData,
        EventRow,
        GradData,
        HeatmapData,
        LossData,
        RatioBand,
        Series,
        StepAxis,
        activation_data,
        event_rows,
        grad_data,
        loss_data,
        lr_data,
        metric_data,
        moving_average,
        ratio_band,
        ratio_heatmap,
        step_axis,
    )
    from ._diagnose import CHECKS, Curves, Verdict, curves_from_run, diagnose, diagnose_curves
    from ._html import (
        ReportData,
        label_steps,
        render_html,
        report_data,
        step_hover,
        write_report,
    )
    from ._page import figure_html, html_page, write_text_file
    from ._runs import RunRecords, load_run, read_records

# Imported on first use (see tunekit._lazy): plotly only when a page is rendered.
_SOURCES = {
    "._data": (
        "ActivationData",
        "EventRow",
        "GradData",
        "HeatmapData",
        "LossData",
        "RatioBand",
        "Series",
        "StepAxis",
        "activation_data",
        "event_rows",
        "grad_data",
        "loss_data",
        "lr_data",
        "metric_data",
        "moving_average",
        "ratio_band",
        "ratio_heatmap",
        "step_axis",
    ),
    "._diagnose": ("CHECKS", "Curves", "Verdict", "curves_from_run", "diagnose", "diagnose_curves"),
    "._html": (
        "ReportData",
        "label_steps",
        "render_html",
        "report_data",
        "step_hover",
        "write_report",
    ),
    "._page": ("figure_html", "html_page", "write_text_file"),
    "._runs": ("RunRecords", "load_run", "read_records"),
}
if not TYPE_CHECKING:
    __getattr__, __dir__ = attach(__name__, _SOURCES)

__all__ = [
    "CHECKS",
    "ActivationData",
    "Curves",
    "EventRow",
    "GradData",
    "HeatmapData",
    "LossData",
    "RatioBand",
    "ReportData",
    "RunRecords",
    "Series",
    "StepAxis",
    "Verdict",
    "activation_data",
    "curves_from_run",
    "diagnose",
    "diagnose_curves",
    "event_rows",
    "figure_html",
    "grad_data",
    "html_page",
    "label_steps",
    "load_run",
    "loss_data",
    "lr_data",
    "metric_data",
    "moving_average",
    "ratio_band",
    "ratio_heatmap",
    "read_records",
    "render_html",
    "report_data",
    "step_axis",
    "step_hover",
    "write_report",
    "write_text_file",
]
