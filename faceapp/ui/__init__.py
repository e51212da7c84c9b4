"""The desktop app: a thin PySide6 layer over the Qt-free engine in faceapp.core.

Layout:
    app.py          `run()`: the QApplication and the main window
    main_window.py  the window: sidebar, pages, shortcuts, status bar, error banner
    state.py        AppState: gallery, models, settings and background jobs, shared by pages
    settings.py     AppSettings: what the user chose, kept with QSettings
    jobs.py         Job: one bulk task in the thread pool, with progress and cancel
    live.py         LiveWorker: a QThread that reads a source and analyses each frame
    capture.py      the guided enrollment capture (an analyser for the live worker)
    video_view.py   the widget that paints a frame and its face boxes
    *_page.py       the pages
    photo_viewer.py one photo with its faces; draw a box around a face the detector missed
    dialogs.py      every question the app asks (tests replace these functions)
    images.py       numpy <-> QImage helpers

The GUI thread only paints and reacts: frames are analysed in a LiveWorker thread, and
imports, exports, re-embedding and gallery queries run as Jobs in the thread pool.
"""
