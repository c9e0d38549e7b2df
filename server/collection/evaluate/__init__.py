"""`imagerecognize evaluate`: how well each type does on the user's own labelled images, and
which threshold to set. layouts.py reads the labelled folder, analysis.py analyses it with
`analyze`'s local engine and resumable results file, metrics.py and scoring.py compute the
numbers, report.py writes the table, report.json and index.html; run.py runs it all."""

from server.collection.evaluate.run import EvaluateRequest, run_evaluate

__all__ = ["EvaluateRequest", "run_evaluate"]
