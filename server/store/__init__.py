"""Storage: the database and its migrations, keys and quota, stored results, the gallery of
known people. Imports models/ (image types), telemetry, settings and errors; never the pipeline."""
