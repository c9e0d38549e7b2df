"""The CompreFace dialect: `/api/v1/recognition/...` (recognize, subjects, faces), answered by
the same pipeline, gallery, keys and quota as /api/v2/ (docs/compat.md). Imports the service,
the store and the HTTP helpers of its parent package."""
