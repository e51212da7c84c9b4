"""The engine: Qt-free and torch-free (numpy, OpenCV, onnxruntime, SQLite)."""
