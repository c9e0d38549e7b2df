"""The analysis pipeline: its stages (stages.py, which every engine runs), batching, the model
manager, torch threads and device placement. Imports models/, telemetry, settings and errors;
never HTTP, keys, quota or storage."""
