"""The DeepStack / CodeProject.AI dialect: /v1/vision/* routes answered by the same pipeline,
gallery, keys and quota as /api/v2/ (docs/compat.md)."""
