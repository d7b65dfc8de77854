"""Scoring models against ground truth, torch-free: what ``bgsdk evaluate`` computes and draws.

* :mod:`.metrics` -- AP/AUROC, best-F1 threshold, per-defect recall, double detection;
* :mod:`.evaluation` -- labelled data sets, every model next to double detection, the table;
* :mod:`.html_report`, :mod:`.svgplot`, :mod:`.panels` -- the self-contained HTML report and the
  7-panel figure (numpy only).
"""
