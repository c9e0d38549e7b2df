"""Operations: readiness (every served model warmed, the database answering), draining on
shutdown, giving memory back after a burst. May import the pipeline, telemetry and settings."""
