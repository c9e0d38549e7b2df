"""The analysis pipeline: decode -> preprocess -> batch -> predict -> postprocess, the model
manager, dynamic batching, torch threads and device placement. Imports models/, telemetry,
settings and errors; never HTTP, keys, quota or storage."""
