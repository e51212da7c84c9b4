"""faceapp: offline face enrollment and recognition."""

__version__ = "0.1.0"
