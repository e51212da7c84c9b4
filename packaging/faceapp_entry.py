"""Entry point of the frozen app (PyInstaller runs this file as __main__)."""

from faceapp.__main__ import main

if __name__ == "__main__":
    raise SystemExit(main())
