"""Two faceapp programs on one gallery file, as users run them, round after round:
`faceapp import` of a folder of LFW photos while other processes run `faceapp
identify` on single photos in a loop (and a second import beside the first). After
each round: SQLite's integrity check, and every photo an import accepted is in the
gallery exactly once. Prints one line per round and a summary.

    python bench/bench_integrity.py [--rounds 10] [--people 100] [--photos 3] [--imports 1]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LFW = REPO.parent / "shared" / "data" / "lfw" / "images"
sys.path.insert(0, str(REPO))

from faceapp.core.enroll import name_from_folder  # noqa: E402


def faceapp(*args) -> list[str]:
    return [sys.executable, "-m", "faceapp", *map(str, args)]


def folders(root: Path, people: list[Path], photos: int, imports: int) -> list[Path]:
    out = []
    for k in range(imports):
        folder = root / f"import-{k}"
        for person in people[k::imports]:
            (folder / person.name).mkdir(parents=True)
            for photo in sorted(person.glob("*.jpg"))[:photos]:
                (folder / person.name / photo.name).symlink_to(photo)
        out.append(folder)
    return out


def one_round(root: Path, people: list[Path], probe: Path, args) -> dict:
    db = root / "g.db"
    imports = folders(root, people, args.photos, args.imports)
    procs = [subprocess.Popen(faceapp("--db", db, "import", f), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for f in imports]
    runs = {"identify": 0, "identify_failed": 0}

    def loop() -> None:
        while any(p.poll() is None for p in procs):
            run = subprocess.run(faceapp("--db", db, "identify", probe), capture_output=True,
                                 text=True)
            runs["identify" if run.returncode == 0 else "identify_failed"] += 1

    identify = threading.Thread(target=loop)
    started = time.monotonic()
    identify.start()
    accepted = []
    for proc, folder in zip(procs, imports):
        out, err = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"import failed: {err[-2000:]}")
        accepted.append(([name_from_folder(p.name) for p in folder.iterdir()],
                         json.loads(out.strip().splitlines()[-1])["added"]))
    identify.join()
    seconds = time.monotonic() - started
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        ok = conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        samples = dict(conn.execute("SELECT p.name, count(f.id) FROM people p JOIN faces f "
                                    "ON f.person_id = p.id GROUP BY p.id").fetchall())
        twice = conn.execute("SELECT count(*) FROM (SELECT person_id, content_hash FROM faces "
                             "GROUP BY person_id, content_hash HAVING count(*) > 1) "
                             "AS t").fetchone()[0]
    except sqlite3.DatabaseError as exc:  # what the corruption this bench hunts looks like
        ok, samples, twice = False, {}, 0
        print(f"  the gallery is damaged: {exc}", flush=True)
    finally:
        conn.close()
    present = all(sum(samples.get(n, 0) for n in names) == added for names, added in accepted)
    return {"integrity_ok": ok, "all_accepted_present_once": present and twice == 0,
            "accepted": sum(a for _, a in accepted), "identify_runs": runs["identify"],
            "identify_failed": runs["identify_failed"], "seconds": round(seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--people", type=int, default=100)
    parser.add_argument("--photos", type=int, default=3, help="photos per person")
    parser.add_argument("--imports", type=int, default=1, help="imports side by side")
    args = parser.parse_args()
    people = [d for d in sorted(LFW.iterdir()) if len(list(d.glob("*.jpg"))) > args.photos]
    people = people[:args.people]
    probe = sorted(people[0].glob("*.jpg"))[args.photos]  # a photo no import holds
    results = []
    for n in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="faceapp-integrity-") as tmp:
            result = one_round(Path(tmp), people, probe, args)
        results.append(result)
        print(f"round {n + 1}: {json.dumps(result)}", flush=True)
    good = sum(r["integrity_ok"] and r["all_accepted_present_once"] for r in results)
    print(f"{good}/{len(results)} rounds whole: {args.imports} import(s) of "
          f"{args.people * args.photos} photos beside an identify loop")


if __name__ == "__main__":
    main()
