"""The imagerecognize.com v2 dialect: `/api/v2/` and its gallery routes. Imports the service,
the store and the HTTP helpers of its parent package."""
