"""Headless commands over the same core the app uses: `python -m faceapp COMMAND`.

Machine-readable output (detections, identities) is JSON lines on stdout; progress
and messages go to stderr.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import time
from pathlib import Path

from .core.filenames import display_name
from .core.gallery.retention import MAX_RETENTION_DAYS
from .core.imageio import ImageError, load_image, read_image
from .core.models import InferenceError, ModelPackError
from .core.paths import default_gallery_path
from .core.operating import NAMED_POINTS, OperatingPoint
from .core.models import DEFAULT_DETECTOR, DEFAULT_EMBEDDER, choose_embedder
from .core.recognize import FacePipeline, Recognizer


class CommandError(RuntimeError):
    pass


class ProgressBar:
    """A one-line progress bar on stderr, redrawn at most a few times a second."""

    def __init__(self, label: str, stream=sys.stderr):
        self.label = label
        self.stream = stream
        self._last = 0.0
        self._started = time.monotonic()

    def __call__(self, done: int, total: int, item: str = "") -> None:
        now = time.monotonic()
        if done < total and now - self._last < 0.2:
            return
        self._last = now
        width = 30
        filled = int(width * done / total) if total else width
        rate = done / max(now - self._started, 1e-6)
        line = (f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] "
                f"{done}/{total} ({rate:.1f}/s)")
        self.stream.write(line)
        if done >= total:
            self.stream.write("\n")
        self.stream.flush()


def _face_record(path: str, index: int, analyzed, scale: float = 1.0) -> dict:
    """scale: a huge photo was decoded smaller; positions are given in the file's."""
    face = analyzed.face
    return {"image": path, "face": index, "score": round(face.score, 4),
            "box": [round(float(v) * scale, 1) for v in face.box],
            "landmarks": [[round(float(x) * scale, 1), round(float(y) * scale, 1)]
                          for x, y in face.landmarks]}


def _gallery(args):
    """The command's gallery. A command opens it once and hands it to whatever needs
    it (the model choice included): a second open of the same file in one process
    would break SQLite's locks (faceapp.core.gallery.files.LiveFiles)."""
    from .core.gallery import has_password, is_server_location, open_gallery

    if is_server_location(args.db):
        if has_password(args.db):
            # a command line is visible to every user of the machine (ps)
            raise CommandError("the gallery location holds a password: put it in ~/.pgpass "
                               "(or a service file, ?service=NAME) instead")
        return open_gallery(args.db, station=args.station)
    return open_gallery(Path(args.db) if args.db else default_gallery_path(),
                        station=args.station)


def _model(args, gallery=None) -> tuple[str, str | None]:
    """The command's embedder (pack, variant): --model, else the model the gallery's
    templates were made with (a gallery enrolled with another model keeps working
    without --model). Returned, never written into args."""
    return choose_embedder(args.model, gallery)


def _pipeline(args, gallery=None) -> FacePipeline:
    pack, variant = _model(args, gallery)
    return FacePipeline.create(args.detector, pack, min_face=args.min_face,
                               threads=args.threads, variant=variant)


def _unknowns(args, gallery, embedder=None):
    """The gallery's unknown faces for the command's model (no inference session
    unless an embedder is given)."""
    from .core.embed import Embedder
    from .core.unknowns import UnknownFaces

    if embedder is None:
        pack, variant = _model(args, gallery)
        embedder = Embedder.from_pack(pack, variant=variant, threads=1)
    return UnknownFaces(gallery, embedder.model_id, embedder.dim,
                        embedder.clustering_threshold())


def _point(args) -> OperatingPoint:
    return OperatingPoint.parse(args.threshold)


def _person_id(gallery, name: str) -> int:
    person = gallery.find_person(name)
    if person is None:
        raise CommandError(f"nobody called '{name}' in the gallery")
    return person.id


def cmd_detect(args) -> int:
    pipeline = _pipeline(args)
    checker = None
    if getattr(args, "liveness", False):
        from .core.liveness import LivenessChecker

        checker = LivenessChecker.from_pack(threads=args.threads)
    status = 0
    for given in args.images:
        path = display_name(given)  # as printed; a name that is not UTF-8 shown escaped
        try:
            image, scale = read_image(given)
            faces = pipeline.analyze(image)
            live = [checker.score(image, a.face) for a in faces] if checker else None
        except (ImageError, InferenceError, MemoryError) as exc:  # this photo only
            print(json.dumps({"image": path, "error": str(exc) or "out of memory"}))
            status = 1
            continue
        if not faces:
            print(json.dumps({"image": path, "faces": 0}))
        for i, analyzed in enumerate(faces):
            record = _face_record(path, i, analyzed, scale)
            if live is not None:  # the presentation-attack check (print or screen)
                record["liveness"] = round(live[i], 4)
                record["live"] = checker.is_live(live[i])
            print(json.dumps(record))
    return status


def cmd_compare(args) -> int:
    gallery_file = Path(args.db or default_gallery_path())
    if args.model or not (args.db and "://" in args.db or gallery_file.exists()):
        pipeline = _pipeline(args)
    else:  # the gallery's model, so that scores read as they do in identify
        with _gallery(args) as gallery:
            pipeline = _pipeline(args, gallery)
    embeddings = []
    for given in (args.first, args.second):
        path = display_name(given)
        faces = pipeline.analyze(load_image(given))
        if not faces:
            raise CommandError(f"{path}: no face found")
        if len(faces) > 1:
            print(f"{path}: {len(faces)} faces, using the most confident one", file=sys.stderr)
        embeddings.append(faces[0].embedding)
    similarity = float(embeddings[0] @ embeddings[1])
    threshold = pipeline.embedder.threshold(args.far)
    print(json.dumps({"similarity": round(similarity, 4), "threshold": threshold,
                      "far": args.far, "same_person": similarity >= threshold,
                      "model": pipeline.embedder.model_id}))
    return 0


def _print_report(report) -> None:
    folders = getattr(report, "folders", {})
    for name, count in report.people.items():
        folder = folders.get(name, name)
        origin = f" (folder {folder})" if folder != name else ""
        print(f"{name}{origin}: {count} sample(s) added", file=sys.stderr)
    for name, others in getattr(report, "confusable", {}).items():
        print(f"warning: {name!r} looks like {', '.join(map(repr, others))}, already in the "
              "gallery, but is written with other characters: they are different people now",
              file=sys.stderr)
    for path, reason in report.skipped:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    if report.cancelled:
        print("cancelled", file=sys.stderr)


def _warn_confusable(gallery, name: str) -> None:
    for other in gallery.confusable_names(name):
        print(f"warning: {name!r} looks like {other!r}, already in the gallery, but is "
              "written with other characters: they are two different people now",
              file=sys.stderr)


def cmd_enroll(args) -> int:
    from .core.enroll import Enroller

    with _gallery(args) as gallery:
        if gallery.find_person(args.name) is None:
            _warn_confusable(gallery, args.name)
        enroller = Enroller(_pipeline(args, gallery), gallery)
        samples, report = enroller.prepare_photos(args.photos, ProgressBar("enrolling"))
        # said before saving; the command line saves anyway (nobody to answer)
        for message in enroller.review(args.name, samples).messages(args.name):
            print(f"warning: {message}", file=sys.stderr)
        enroller.save_reporting(args.name, samples, report)
    _print_report(report)
    print(json.dumps({"person": args.name, "added": report.added,
                      "skipped": len(report.skipped)}))
    return 0 if report.added else 1


def cmd_import(args) -> int:
    from .core.enroll import Enroller

    with _gallery(args) as gallery:
        enroller = Enroller(_pipeline(args, gallery), gallery)
        started = time.perf_counter()
        report = enroller.import_folder(args.folder, ProgressBar("importing"))
        elapsed = time.perf_counter() - started
    _print_report(report)
    print(json.dumps({"people": len(report.people), "added": report.added,
                      "skipped": len(report.skipped), "seconds": round(elapsed, 2)}))
    return 0


def cmd_import_tags(args) -> int:
    from .core.enroll import Enroller
    from .core.face_tags import ExifTool, import_tags

    exiftool = ExifTool()  # no exiftool: said before any model is loaded
    with _gallery(args) as gallery:
        enroller = Enroller(_pipeline(args, gallery), gallery)
        started = time.perf_counter()
        report = import_tags(enroller, args.paths, ProgressBar("reading tags"),
                             exiftool=exiftool)
        elapsed = time.perf_counter() - started
    _print_report(report)
    for message in report.warnings:  # saved anyway: the tag is what a person chose
        print(f"warning: {message}", file=sys.stderr)
    print(json.dumps({"photos": report.photos, "tagged_photos": report.tagged,
                      "regions": report.regions, "people": len(report.people),
                      "added": report.added, "skipped": len(report.skipped),
                      "seconds": round(elapsed, 2)}))
    return 0


def cmd_write_tags(args) -> int:
    from .core.face_tags import ExifTool, write_tags

    exiftool = ExifTool()  # no exiftool: said before any model is loaded
    with _gallery(args) as gallery:
        pipeline = _pipeline(args, gallery)
        recognizer = Recognizer(pipeline, gallery, _point(args), log_events=False,
                                keep_unknowns=False)
        if not len(recognizer.index):
            raise CommandError("nobody in the gallery has templates for "
                               f"{pipeline.embedder.model_id}: enroll people first (or run "
                               "`faceapp reembed`)")
        report = write_tags(recognizer, args.paths, dry_run=args.dry_run,
                            sidecar=args.sidecar, in_file=args.in_file,
                            progress=ProgressBar("writing tags"),
                            on_change=lambda c: print(json.dumps(c.record()), flush=True),
                            exiftool=exiftool)
    for item, why in report.skipped:
        print(f"skipped {item}: {why}", file=sys.stderr)
    would = "would be " if args.dry_run else ""
    print(f"{report.photos} photo(s), {report.faces} face(s), {report.recognised} of people "
          f"enrolled; {report.already_tagged} already tagged (left as they are); "
          f"{report.added} tag(s) {would}written into {report.files} file(s)", file=sys.stderr)
    return 0


def _identity_record(frame, face, names: dict) -> dict:
    """One face's answer, and why: the nearest people and their scores."""
    decision = face.decision
    return {
        "frame": frame.index, "path": frame.path, "track": face.track_id,
        "box": [round(float(v) * frame.scale, 1) for v in face.face.box],
        "person": names.get(decision.person_id) if decision.known else None,
        "score": round(decision.score, 4), "reason": decision.reason,
        "nearest": names.get(decision.nearest_id),
        "runner_up": names.get(decision.runner_up_id),
        "runner_up_score": None if decision.runner_up is None else round(decision.runner_up, 4)}


def cmd_identify(args) -> int:
    from .core.sources import ImageFolderSource, SourceError, open_source

    with _gallery(args) as gallery:
        pipeline = _pipeline(args, gallery)
        recognizer = Recognizer(pipeline, gallery, _point(args), log_events=not args.no_events)
        if not len(recognizer.index) and gallery.face_count():
            model = pipeline.embedder.model_id
            raise CommandError(
                f"the gallery's {gallery.face_count()} samples have no templates for {model} "
                f"yet: run `faceapp reembed --model {model}` first")
        damaged = gallery.damaged_embeddings(pipeline.embedder.model_id)
        if damaged:
            print(f"{len(damaged)} sample(s) have a damaged template and are left out "
                  f"(face id {', '.join(map(str, damaged[:10]))}"
                  f"{', ...' if len(damaged) > 10 else ''}): `faceapp reembed` rebuilds them",
                  file=sys.stderr)
        rule = recognizer.rule
        if gallery.read_only and not args.no_events:
            print(f"the gallery {gallery.path} is read-only: identifying without saving "
                  "events", file=sys.stderr)
        print(f"{len(recognizer.index)} samples of {rule.people if len(recognizer.index) else 0} "
              f"people; at {recognizer.identifier.point}: threshold {rule.threshold:.4f}"
              + (f", runner-up weight {rule.runner_up_weight:.3f}" if rule.runner_up_weight
                 else "")
              + (f" (raised by {rule.population_shift:.3f}: this gallery's people resemble "
                 "each other more than the calibration's)" if rule.population_shift else "")
              + (f", expected strangers named {rule.fpir:.2%}" if rule.fpir is not None else "")
              + (f", enrolled people missed ~{rule.miss:.0%}" if rule.miss is not None else ""),
              file=sys.stderr)
        told_locked = told_offline = False
        watcher = alert_sink = None
        if args.on_alert:
            from .core.alerts import AlertWatcher, CommandSink

            alert_sink = CommandSink(args.on_alert, timeout=args.alert_timeout)
        try:
            with open_source(args.source) as source:
                # Photos in a folder are unrelated stills unless asked: tracking across
                # them carries one photo's name onto the next.
                stills = args.stills or (isinstance(source, ImageFolderSource)
                                         and not args.track)
                if alert_sink is not None:
                    watcher = AlertWatcher(recognizer, args.source, [alert_sink, _tell_alert],
                                           label=source.label)
                for frame in source:
                    try:
                        result = recognizer.process(frame.image, source=frame.where,
                                                    track=source.is_live or not stills,
                                                    path=frame.path or frame.media)
                    except (InferenceError, MemoryError) as exc:  # this frame only
                        print(json.dumps({"frame": frame.index, "path": frame.path,
                                          "error": str(exc) or "out of memory"}), flush=True)
                        continue
                    for face in result.faces:
                        print(json.dumps(_identity_record(frame, face, recognizer.names)),
                              flush=True)
                    if watcher is not None:
                        watcher.observe(result, frame.image)
                    if recognizer.events.paused != told_locked:
                        told_locked = recognizer.events.paused
                        print("the gallery is locked by another program: identifying goes on, "
                              "events wait and are saved when it is free" if told_locked
                              else "the gallery is free again: waiting events were saved",
                              file=sys.stderr)
                    offline = recognizer.offline or recognizer.events.offline
                    if offline != told_offline:
                        told_offline = offline
                        print("the gallery server cannot be reached: identifying goes on with "
                              "the last list of people, events are queued on this machine"
                              if offline else "the gallery server is back: queued events are "
                              "being sent", file=sys.stderr)
                    if args.max_frames and frame.index + 1 >= args.max_frames:
                        break
                # a folder's files that were not read (a FIFO, a damaged photo): each
                # reason names its file
                for _, why in getattr(source, "skipped", ()):
                    print(f"skipped {why}", file=sys.stderr)
        except SourceError as exc:
            raise CommandError(str(exc)) from None
        finally:
            if alert_sink is not None:  # the last alerts still reach the command
                alert_sink.close()
            if recognizer.events.pending:
                print(f"saving {len(recognizer.events.pending)} waiting event(s)...",
                      file=sys.stderr)
                recognizer.events.flush(force=True, wait=30)
            if recognizer.events.pending:
                print(f"{len(recognizer.events.pending)} event(s) could not be saved: the "
                      "gallery stayed locked", file=sys.stderr)
            if recognizer.events.spooled:
                print(f"{recognizer.events.spooled} event(s) wait on this machine for the "
                      "gallery server; they are sent the next time it is reachable",
                      file=sys.stderr)
    return 0


def _cluster_record(cluster) -> dict:
    return {"cluster": cluster.id, "size": cluster.size, "ignored": cluster.ignored,
            "first_seen": cluster.first_seen.isoformat(),
            "last_seen": cluster.last_seen.isoformat(),
            "paths": cluster.paths, "sources": cluster.sources[:20]}


def cmd_unknowns(args) -> int:
    from .core.gallery import retention_days, set_retention_days

    with _gallery(args) as gallery:
        if args.retention is not None:
            set_retention_days(gallery, args.retention)
            print(f"unknown faces are kept {args.retention} day(s)", file=sys.stderr)
        unknowns = _unknowns(args, gallery)
        clusters = unknowns.list(include_ignored=args.all)
        for cluster in clusters:
            if cluster.size >= args.min_size:
                print(json.dumps(_cluster_record(cluster)), flush=True)
        print(f"{sum(c.size for c in clusters)} unknown face(s) in {len(clusters)} "
              f"cluster(s), kept {retention_days(gallery)} day(s)", file=sys.stderr)
    return 0


def cmd_name_cluster(args) -> int:
    from .core.enroll import embed_samples

    with _gallery(args) as gallery:
        pipeline = _pipeline(args, gallery)
        unknowns = _unknowns(args, gallery, pipeline.embedder)
        existing = gallery.find_person(args.name)
        if existing is None:
            _warn_confusable(gallery, args.name)
        person_id, face_ids, left_out = unknowns.name_cluster(
            args.cluster, existing.id if existing else args.name,
            embed=lambda samples: embed_samples(pipeline.embedder, samples))
        name = gallery.person(person_id).name
    print(json.dumps({"cluster": args.cluster, "person": name, "added": len(face_ids),
                      "left_out_for_quality": left_out}))
    return 0


def cmd_ignore_cluster(args) -> int:
    with _gallery(args) as gallery:
        _unknowns(args, gallery).ignore_cluster(args.cluster, ignored=not args.undo)
    print(json.dumps({"cluster": args.cluster, "ignored": not args.undo}))
    return 0


def cmd_scan(args) -> int:
    from .core.scan import PhotoScanner
    from .core.sources import SourceError

    with _gallery(args) as gallery:
        pipeline = _pipeline(args, gallery)
        recognizer = Recognizer(pipeline, gallery, _point(args), log_events=False)
        scanner = PhotoScanner(recognizer)
        try:
            report = scanner.scan(args.folder, ProgressBar("scanning"), rescan=args.rescan)
        except SourceError as exc:
            raise CommandError(str(exc)) from None
        for path, reason in report.skipped:
            print(f"skipped {path}: {reason}", file=sys.stderr)
    print(json.dumps({"files": report.files, "unchanged": report.unchanged,
                      "faces": report.faces, "known": report.known,
                      "unknown": report.unknown, "skipped": len(report.skipped)}))
    return 0


def _tell_alert(alert) -> None:
    print(f"alert: {alert.text()}", file=sys.stderr, flush=True)


def cmd_watch(args) -> int:
    from .core.gallery import (alert_every, alerts, set_alert_every, unwatch, watch,
                               watch_list)

    with _gallery(args) as gallery:
        if args.every is not None:
            set_alert_every(gallery, args.every)
            print(f"at most one alert per person every {args.every} minute(s)",
                  file=sys.stderr)
        if args.action in ("add", "remove"):
            if args.unknown == bool(args.name):
                raise CommandError(f"watch {args.action}: give a NAME or --unknown")
            who = "any unknown face" if args.unknown else args.name
            person = None if args.unknown else _person_id(gallery, args.name)
            if args.action == "add":
                watch(gallery, person, args.camera or "", args.quiet or "")
                print(f"alerts about {who}"
                      + (f" on {args.camera}" if args.camera else " on every camera")
                      + (f", quiet {args.quiet}" if args.quiet else ""), file=sys.stderr)
            elif not unwatch(gallery, person, args.camera):
                raise CommandError(f"{who} is not on the watch list"
                                   + (f" for {args.camera}" if args.camera else ""))
        elif args.action == "list":
            for entry in watch_list(gallery):
                print(json.dumps({"name": entry.name, "unknown": entry.person_id is None,
                                  "camera": entry.camera or None,
                                  "quiet": entry.quiet or None}))
            print(f"at most one alert per person every {alert_every(gallery)} minute(s)",
                  file=sys.stderr)
        elif args.action == "alerts":
            for alert in alerts(gallery, limit=args.limit):
                print(json.dumps({"time": alert.time.isoformat(), "name": alert.name,
                                  "person_id": alert.person_id, "camera": alert.camera,
                                  "station": alert.station, "track": alert.track,
                                  "picture": alert.has_picture,
                                  "acknowledged": alert.acknowledged is not None}))
    return 0


def _quiet(text: str) -> str:
    from .core.gallery import parse_quiet

    try:
        parse_quiet(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def cmd_photos_of(args) -> int:
    from .core.scan import photos_of

    with _gallery(args) as gallery:
        for path in photos_of(gallery, _person_id(gallery, args.name)):
            print(path, flush=True)
    return 0


def cmd_people(args) -> int:
    with _gallery(args) as gallery:
        if args.action == "list":
            for person in gallery.people():
                print(json.dumps({"id": person.id, "name": person.name,
                                  "samples": person.face_count}))
        elif args.action == "rename":
            gallery.rename_person(_person_id(gallery, args.names[0]), args.names[1])
        elif args.action == "merge":
            keep, absorb = (_person_id(gallery, n) for n in args.names[:2])
            gallery.merge_people(keep, absorb)
        elif args.action == "delete":
            person_id = _person_id(gallery, args.names[0])
            if not args.yes:
                raise CommandError("deleting removes all of this person's samples: add --yes")
            gone = gallery.delete_person(person_id, events=not args.keep_events)
            print(f"deleted {args.names[0]}, their samples and "
                  + ("their events stay (without their samples)" if args.keep_events
                     else f"their {gone} event(s)"), file=sys.stderr)
    return 0


def cmd_events(args) -> int:
    with _gallery(args) as gallery:
        if args.csv:
            _check_output(gallery, args.csv, args.overwrite)
            gallery.export_events_csv(args.csv, station=args.from_station)
            print(f"wrote {args.csv}", file=sys.stderr)
            return 0
        person_id = _person_id(gallery, args.person) if args.person else None
        names = {p.id: p.name for p in gallery.people()}
        for event in gallery.events(person_id=person_id, limit=args.limit,
                                    station=args.from_station):
            print(json.dumps({"time": event.time.isoformat(),
                              "score": None if event.score is None else round(event.score, 4),
                              "person": names.get(event.person_id, event.name),
                              "source": event.source, "station": event.station}))
    return 0


def cmd_grant_station(args) -> int:
    from .core.gallery.server import grant_station

    with _gallery(args) as gallery:
        grant_station(gallery, args.role)
    print(json.dumps({"role": args.role, "granted": "read and change rows; no table changes, "
                      "no change to the gallery's identity and schema version (meta)"}))
    return 0


def _check_output(gallery, path: str, overwrite: bool) -> None:
    """An output never replaces the gallery in use, nor another gallery or archive
    unless --overwrite says so."""
    from .core.archive import is_archive
    from .core.gallery import check_output_path

    target = Path(path)
    if not getattr(gallery, "remote", False):
        try:
            same = target.exists() and os.path.samefile(target, gallery.path)
        except OSError:
            same = False
        if same:
            raise CommandError(f"{path} is the gallery itself: choose another file name")
    check_output_path(target, overwrite=overwrite)
    if target.exists() and not overwrite and is_archive(target):
        raise CommandError(f"{path} is a faceapp export: add --overwrite to replace it")


def _passphrase(args, confirm: bool) -> str | None:
    if args.passphrase_file:
        return Path(args.passphrase_file).read_text().strip()
    if not args.encrypt:
        return None
    if not sys.stdin.isatty():
        raise CommandError("--encrypt asks for the passphrase in a terminal; without one, "
                           "give it in a file: --passphrase-file FILE")
    phrase = getpass.getpass("passphrase: ")
    if confirm and getpass.getpass("again: ") != phrase:
        raise CommandError("the passphrases differ")
    return phrase


def cmd_export(args) -> int:
    from .core.archive import export_gallery

    with _gallery(args) as gallery:
        _check_output(gallery, args.file, args.overwrite)
        summary = export_gallery(gallery, args.file, passphrase=_passphrase(args, confirm=True))
    for item, why in summary.skipped:
        print(f"skipped {item}: {why}", file=sys.stderr)
    print(f"wrote {args.file}: {summary.people} people, {summary.faces} samples"
          + (f"; {len(summary.skipped)} damaged sample(s) left out" if summary.skipped else ""),
          file=sys.stderr)
    print(json.dumps({"people": summary.people, "samples": summary.faces,
                      "skipped": [item for item, _ in summary.skipped]}))
    return 0


def cmd_import_gallery(args) -> int:
    from .core.archive import import_gallery

    with _gallery(args) as gallery:
        pipeline = _pipeline(args, gallery)
        result = import_gallery(gallery, args.file, passphrase=_passphrase(args, confirm=False),
                                on_conflict=args.on_conflict, embedder=pipeline.embedder)
    for item, why in result.damaged:
        print(f"skipped {item}: {why}", file=sys.stderr)
    for old, new in result.renamed.items():
        print(f"{old} is already in the gallery: imported as {new}", file=sys.stderr)
    for name in result.people_skipped:
        print(f"{name} is already in the gallery: skipped", file=sys.stderr)
    for name, score in result.unlike.items():
        print(f"warning: the photos merged into {name} do not look like the {name} already "
              f"enrolled (best score {score:.2f}): are they of someone else?", file=sys.stderr)
    print(json.dumps({"people_added": result.people_added, "people_merged": result.people_merged,
                      "people_skipped": len(result.people_skipped),
                      "faces_added": result.faces_added, "faces_skipped": result.faces_skipped,
                      "damaged": len(result.damaged),
                      "templates_computed": result.embeddings_added}))
    return 0


def cmd_reembed(args) -> int:
    from .core.enroll import Enroller

    with _gallery(args) as gallery:
        enroller = Enroller(_pipeline(args, gallery), gallery)
        count = enroller.reembed(ProgressBar(f"re-embedding for {enroller.embedder.model_id}"))
    print(json.dumps({"model": enroller.embedder.model_id, "embedded": count}))
    return 0


# ------------------------------------------------------------------ argument types
# Checked where they are parsed: an id past SQLite's 64-bit integers, a limit of 10^30
# or a name that is not text give argparse's one-line usage error, not a traceback
# (OverflowError, UnicodeEncodeError) from deep inside a command.
MAX_ID = 2**63 - 1
MAX_LIMIT = 1_000_000  # rows listed at once (--csv writes them all)


def _int_in(low: int, high: int, what: str):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:  # also a string of digits too long for int()
            raise argparse.ArgumentTypeError(
                f"{what} is a whole number, not {display_name(text[:40])!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{what} is from {low} to {high}, not {value}")
        return value

    parse.__name__ = what
    return parse


_id = _int_in(1, MAX_ID, "an id")


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # the cores this process may run on
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _threads(text: str) -> int:
    """More threads than cores only slow inference down: capped, with a note."""
    value = _int_in(1, MAX_ID, "--threads")(text)
    cores = _cores()
    if value > cores:
        print(f"faceapp: --threads {value} is more than this machine's {cores} core(s): "
              f"using {cores}", file=sys.stderr)
        return cores
    return value


def _float_in(high: float, what: str):
    """A number above 0 and at most `high` (NaN and inf are refused too)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not 0 < value <= high:
            raise argparse.ArgumentTypeError(f"{what} is a number above 0 and at most {high:g}, "
                                             f"not {display_name(text[:40])!r}")
        return value

    parse.__name__ = what
    return parse


def _text(text: str) -> str:
    """A name or label the gallery stores: argv bytes that are not UTF-8 arrive as lone
    surrogates, which SQLite cannot hold."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise argparse.ArgumentTypeError(f"{display_name(text)!r} is not UTF-8 text") \
            from None
    return text


def _global_options(parser: argparse.ArgumentParser, defaults: bool) -> None:
    def default(value):
        return value if defaults else argparse.SUPPRESS

    parser.add_argument("--db", default=default(None),
                        help=f"gallery file (default {default_gallery_path()}), or a gallery "
                             "server: postgresql://USER@HOST/DBNAME[?sslmode=verify-full] "
                             "(password from ~/.pgpass or a service file)")
    parser.add_argument("--station", type=_text, default=default(None),
                        help="this station's name on the events it records (default: "
                             "$FACEAPP_STATION or the host name)")
    parser.add_argument("--detector", default=default(DEFAULT_DETECTOR), help="detector pack")
    parser.add_argument("--model", default=default(None),
                        help=f"embedder pack (default: the one the gallery's templates were "
                             f"made with, else {DEFAULT_EMBEDDER})")
    parser.add_argument("--min-face", type=_int_in(1, 10_000, "--min-face"),
                        default=default(40),
                        help="smallest face, pixels")
    parser.add_argument("--threads", type=_threads, default=default(min(2, _cores())),
                        help="inference threads (at most this machine's cores)")
    parser.add_argument("--threshold", default=default("balanced"),
                        help=f"{' / '.join(NAMED_POINTS)} (strangers named: "
                             f"{', '.join(f'{v:.1%}%' for v in NAMED_POINTS.values())}, "
                             "for the gallery's size), fpir=RATE, or a cosine value")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="faceapp", description="Offline face recognition. "
                                     "With no command, the desktop app opens.")
    _global_options(parser, defaults=True)
    # The same options after the command (`enroll NAME photo.jpg --db g.db`): there they
    # default to "not given", so they never undo one given before the command.
    after = argparse.ArgumentParser(add_help=False)
    _global_options(after, defaults=False)
    sub = parser.add_subparsers(dest="command")
    add_parser = sub.add_parser

    def with_globals(name, **kwargs):
        return add_parser(name, parents=[after], **kwargs)

    sub.add_parser = with_globals

    p = sub.add_parser("detect", help="faces, boxes and landmarks in photos (JSON lines)")
    p.add_argument("images", nargs="+")
    p.add_argument("--liveness", action="store_true",
                   help="also check each face for a print or a screen held up to the "
                        "camera: its score (probability of a real face) and live true/false")
    p.set_defaults(func=cmd_detect)

    p = sub.add_parser("compare", help="are two photos the same person?")
    p.add_argument("first")
    p.add_argument("second")
    p.add_argument("--far", type=_float_in(1, "--far"), default=1e-3,
                   help="false accept rate of the decision threshold (default 1e-3)")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("enroll", help="add a person (or more samples) from photos")
    p.add_argument("name", type=_text)
    p.add_argument("photos", nargs="+")
    p.set_defaults(func=cmd_enroll)

    p = sub.add_parser("import", help="enroll a folder with one sub-folder per person")
    p.add_argument("folder")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("import-tags", help="enroll the faces that photos are already tagged "
                       "with (digiKam, Lightroom, Picasa, darktable, Windows Photos: XMP face "
                       "regions, embedded or in .xmp sidecars)")
    p.add_argument("paths", nargs="+", metavar="PATH", help="photos or folders (subfolders too)")
    p.set_defaults(func=cmd_import_tags)

    p = sub.add_parser("write-tags", help="write the names faceapp recognises as standard "
                       "face tags (MWG regions) into .xmp sidecars (JSON lines)")
    p.add_argument("paths", nargs="+", metavar="PATH", help="photos or folders (subfolders too)")
    p.add_argument("--sidecar", choices=["photo.xmp", "photo.jpg.xmp"], default="photo.xmp",
                   help="sidecar name: photo.xmp (Lightroom, digiKam; the default) or "
                        "photo.jpg.xmp (darktable)")
    p.add_argument("--in-file", action="store_true",
                   help="write into the photos themselves instead of sidecars")
    p.add_argument("--dry-run", action="store_true",
                   help="only list what would be written; no file is changed")
    p.set_defaults(func=cmd_write_tags)

    p = sub.add_parser("identify", help="identify faces in an image, video, folder, "
                                        "camera index or stream URL (JSON lines)")
    p.add_argument("source")
    p.add_argument("--max-frames", type=_int_in(0, 10**12, "--max-frames"), default=0)
    p.add_argument("--stills", action="store_true",
                   help="treat frames as unrelated photos (no tracking; the default for "
                        "a folder)")
    p.add_argument("--track", action="store_true",
                   help="track faces across a folder's photos (a folder of video frames)")
    p.add_argument("--no-events", action="store_true", help="do not write the event log")
    p.add_argument("--on-alert", metavar="CMD", type=_text,
                   help="run CMD for each alert about someone on the watch list (`faceapp "
                        "watch`), with the alert as JSON on its standard input: name, "
                        "person_id, camera, time, score, track, picture (base64 JPEG)")
    p.add_argument("--alert-timeout", type=_float_in(3600, "--alert-timeout"), default=10.0, metavar="SECONDS",
                   help="stop an alert command still running after this long (default 10)")
    p.set_defaults(func=cmd_identify)

    p = sub.add_parser("watch", help="the watch list: whom to be alerted about, on which "
                                     "camera and outside which quiet hours")
    p.add_argument("action", nargs="?", default="list",
                   choices=["add", "remove", "list", "alerts"])
    p.add_argument("name", nargs="?", type=_text, help="a person in the gallery")
    p.add_argument("--unknown", action="store_true", help="any unknown face")
    p.add_argument("--camera", type=_text, metavar="SOURCE",
                   help="only on this camera: a source (0, a file, a stream), its file "
                        "name or a station (default: every camera)")
    p.add_argument("--quiet", type=_quiet, metavar="HH:MM-HH:MM",
                   help="no alerts between these times (local time; 22:00-06:00 spans "
                        "midnight)")
    p.add_argument("--every", type=_int_in(0, 24 * 60, "--every"), metavar="MINUTES",
                   help="at most one alert per person every MINUTES (for every entry)")
    p.add_argument("--limit", type=_int_in(1, MAX_LIMIT, "--limit"), default=100,
                   help="alerts: how many of the latest")
    p.set_defaults(func=cmd_watch)

    p = sub.add_parser("people", help="list, rename, merge or delete people")
    p.add_argument("action", nargs="?", default="list",
                   choices=["list", "rename", "merge", "delete"])
    p.add_argument("names", nargs="*", type=_text,
                   help="rename OLD NEW | merge KEEP OTHER | delete NAME")
    p.add_argument("--yes", action="store_true", help="confirm a delete")
    p.add_argument("--keep-events", action="store_true",
                   help="delete: keep the person's events (face thumbnails, name); by "
                        "default they go with the person")
    p.set_defaults(func=cmd_people)

    p = sub.add_parser("events", help="the recognition log")
    p.add_argument("--person", type=_text)
    p.add_argument("--limit", type=_int_in(1, MAX_LIMIT, "--limit"), default=100)
    p.add_argument("--csv", help="write the whole log to this CSV file")
    p.add_argument("--from-station", type=_text, metavar="NAME",
                   help="only the events of this station")
    p.add_argument("--overwrite", action="store_true",
                   help="let --csv replace a database or faceapp file (never the gallery in use)")
    p.set_defaults(func=cmd_events)

    for name, func, help_text in (("export", cmd_export, "write the gallery to one file"),
                                  ("import-gallery", cmd_import_gallery,
                                   "read a gallery file written by export")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("file")
        p.add_argument("--encrypt", action="store_true", help="ask for a passphrase")
        p.add_argument("--passphrase-file", help="read the passphrase from this file")
        if name == "export":
            p.add_argument("--overwrite", action="store_true",
                           help="replace FILE even if it is a database or an earlier export "
                                "(never the gallery in use)")
        if name == "import-gallery":
            p.add_argument("--on-conflict", choices=["merge", "rename", "skip"],
                           help="for people whose name is already in the gallery: add "
                                "their samples to them, import them as \"Name (2)\", or "
                                "leave them out (without it such an import is refused)")
        p.set_defaults(func=func)

    p = sub.add_parser("unknowns", help="faces nobody was recognised as, grouped by person "
                                        "(one JSON object per cluster)")
    p.add_argument("--all", action="store_true", help="include ignored clusters")
    p.add_argument("--min-size", type=_int_in(1, 10**9, "--min-size"), default=1,
                   help="list clusters of at least N faces")
    p.add_argument("--retention", type=_int_in(0, MAX_RETENTION_DAYS, "--retention"),
                   metavar="DAYS",
                   help="keep unknown faces this many days (0: keep none); older ones "
                        "are deleted now")
    p.set_defaults(func=cmd_unknowns)

    p = sub.add_parser("name-cluster", help="enroll an unknown cluster's good faces as a "
                                            "person (new or existing)")
    p.add_argument("cluster", type=_id)
    p.add_argument("name", type=_text)
    p.set_defaults(func=cmd_name_cluster)

    p = sub.add_parser("ignore-cluster", help="stop listing an unknown cluster (a poster, "
                                              "a TV); its look-alikes keep joining it")
    p.add_argument("cluster", type=_id)
    p.add_argument("--undo", action="store_true", help="list it again")
    p.set_defaults(func=cmd_ignore_cluster)

    p = sub.add_parser("scan", help="find every face in a folder of photos (and its "
                                    "subfolders) and remember which file it is in")
    p.add_argument("folder")
    p.add_argument("--rescan", action="store_true", help="also files scanned before")
    p.set_defaults(func=cmd_scan)

    p = sub.add_parser("photos-of", help="the scanned files a person appears in")
    p.add_argument("name", type=_text)
    p.set_defaults(func=cmd_photos_of)

    p = sub.add_parser("grant-station", help="on a gallery server, as its owner: let a "
                       "station role read and change rows (not tables)")
    p.add_argument("role", type=_text)
    p.set_defaults(func=cmd_grant_station)

    p = sub.add_parser("reembed", help="embed stored faces for the active model")
    p.set_defaults(func=cmd_reembed)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if args.command == "people" and len(args.names) < {"list": 0, "rename": 2, "merge": 2,
                                                      "delete": 1}[args.action]:
        parser.error(f"people {args.action}: missing names")
    from .core.gallery import GalleryError
    from .core.enroll import EnrollError

    try:
        return args.func(args)
    except (ModelPackError, ImageError, GalleryError, EnrollError, CommandError,
            InferenceError, ValueError) as exc:
        print(f"faceapp: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (`identify DIR | head`): it asked for no more output
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
