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
else:
    __getattr__, __dir__, __all__ = attach(__name__, __file__)
