"""`imagerecognize analyze`: walking a collection, the resumable results file and the two
engines (local, Ray); `imagerecognize evaluate` (evaluate/) on top of the local engine.
Imports the pipeline, the store and settings; never HTTP or the service."""
