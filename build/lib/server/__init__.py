"""imagerecognize: a self-hosted server for the imagerecognize.com v2 API."""

__version__ = "0.1.0"
