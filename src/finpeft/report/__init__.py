"""Reports: metrics and the report.md / plots of an evaluation (classification.py, regression.py), below the
tasks that choose them (finpeft.tasks), so any stage may write one."""
