"""The engine: Qt-free and torch-free (numpy, OpenCV, onnxruntime, SQLite, psycopg).

In pipeline order:
    sources.py      frames from a camera, a video file, a photo folder or a stream
    imageio.py      photos read safely: size from the header first, EXIF orientation
    models.py       model packs (manifest, files, checksums) and the default models
    detect.py       MTCNN: face boxes and five landmarks
    align.py        the alignment templates; crops for the embedder and for storage
    quality.py      is a face good enough to recognise, or to enroll?
    embed.py        the embedder: unit vectors (mirror fusion for templates)
    index.py        the in-memory search over one template per person
    operating.py    operating points: how many strangers may be named
    identify.py     decisions: a name, or unknown and why (population check: population.py)
    tracking.py     faces followed through video, votes per track
    recognize.py    FacePipeline (the stages) and Recognizer (stages + gallery + tracks)
    event_writer.py events and unknown faces written without stopping recognition
    gallery/        the store: people, samples, embeddings, events (SQLite or a server)
    enroll.py       enrolment from photos and folders, re-embedding
    unknowns.py     faces nobody was recognised as, grouped (clustering.py) and named
    scan.py         a photo archive scanned: which face is in which file
    face_tags.py    face tags other photo programs read and write (XMP, via exiftool)
    manual_face.py  a face the detector missed, found inside a box the user drew
    archive.py      a gallery exported to one file (optionally encrypted) and back
    filenames.py    file names as the file system gives them (shown escaped)
    paths.py        the user's data folder
"""
