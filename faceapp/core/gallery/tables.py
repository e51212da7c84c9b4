"""The gallery's schema, defined once for both backends: SQLAlchemy renders it as each
database's DDL (BLOB / BYTEA, INTEGER PRIMARY KEY / BIGSERIAL, REAL / DOUBLE
PRECISION). Only the DDL comes from here; the gallery's queries are plain SQL
(sql.py). Imported only to create a gallery (and by migrations), so that
opening one does not load SQLAlchemy. The version it describes is
schema.SCHEMA_VERSION; its layout is described there.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as sa_postgresql
from sqlalchemy.dialects import sqlite as sa_sqlite
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.schema import AddConstraint, CreateIndex, CreateTable
from sqlalchemy.sql.expression import ColumnElement

# ids: INTEGER PRIMARY KEY (the rowid) in a file, 64-bit on a server
_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# 8-byte floats on both (PostgreSQL's REAL is 4 bytes)
_Real = sa.Double().with_variant(sa_sqlite.REAL(), "sqlite")
_Text, _Blob, _Int = sa.Text, sa.LargeBinary, sa.Integer


class _EmptyBlob(ColumnElement):
    """The empty byte string as a column default, written as each database does."""
    inherit_cache = True


@compiles(_EmptyBlob, "sqlite")
def _empty_blob_sqlite(element, compiler, **kw):
    return "x''"


@compiles(_EmptyBlob, "postgresql")
def _empty_blob_postgresql(element, compiler, **kw):
    return "'\\x'::bytea"


def _pk() -> sa.Column:
    # nullable=True only keeps SQLAlchemy from writing NOT NULL beside SQLite's
    # INTEGER PRIMARY KEY, so that a new file and a migrated one look the same
    return sa.Column("id", _Id, primary_key=True, nullable=True)


def _flag(name: str) -> sa.Column:
    return sa.Column(name, _Int, sa.CheckConstraint(f"{name} IN (0, 1)"), nullable=False,
                     server_default=sa.text("0"))


def _text_default(name: str) -> sa.Column:
    return sa.Column(name, _Text, nullable=False, server_default="")


METADATA = sa.MetaData()

# what the gallery is (app id, schema version, created): written by its owner only
sa.Table("meta", METADATA,
         sa.Column("key", _Text, primary_key=True, nullable=True),
         sa.Column("value", _Text, nullable=False))
# v7: what every station changes (change counters, shared settings); a station role on
# a server may write this table but not meta
sa.Table("gallery_state", METADATA,
         sa.Column("key", _Text, primary_key=True, nullable=True),
         sa.Column("value", _Text, nullable=False))
sa.Table("people", METADATA,
         _pk(),
         sa.Column("name", _Text, nullable=False),
         sa.Column("name_key", _Text, nullable=False, unique=True),
         sa.Column("created", _Text, nullable=False),
         sa.Column("updated", _Text, nullable=False),
         _text_default("notes"),
         # people <-> faces is a cycle: on a server this key is added after both
         sa.Column("portrait_id", _Id, sa.ForeignKey("faces.id", ondelete="SET NULL",
                                                     use_alter=True,
                                                     name="people_portrait_fk")))
sa.Table("faces", METADATA,
         _pk(),
         sa.Column("person_id", _Id, sa.ForeignKey("people.id", ondelete="CASCADE"),
                   nullable=False),
         sa.Column("crop", _Blob, nullable=False),
         sa.Column("landmarks", _Text, nullable=False),
         sa.Column("quality", _Real, nullable=False),
         _text_default("source"),
         sa.Column("created", _Text, nullable=False),
         _flag("flagged"),
         sa.Column("content_hash", _Blob, nullable=False,
                   server_default=sa.schema.DefaultClause(_EmptyBlob())),
         sa.Index("faces_person", "person_id"),
         sa.Index("faces_content", "person_id", "content_hash", unique=True))
sa.Table("embeddings", METADATA,
         sa.Column("face_id", _Id, sa.ForeignKey("faces.id", ondelete="CASCADE"),
                   primary_key=True),
         sa.Column("model_id", _Text, primary_key=True),
         sa.Column("dim", _Int, sa.CheckConstraint("dim > 0"), nullable=False),
         sa.Column("vector", _Blob, sa.CheckConstraint("length(vector) = 4 * dim"),
                   nullable=False),
         sa.Index("embeddings_model", "model_id"))
sa.Table("events", METADATA,
         _pk(),
         sa.Column("time", _Text, nullable=False),
         sa.Column("person_id", _Id, sa.ForeignKey("people.id", ondelete="SET NULL")),
         sa.Column("score", _Real),
         _text_default("source"),
         sa.Column("thumbnail", _Blob),
         sa.Column("name", _Text),
         _text_default("reason"),
         sa.Column("nearest", _Text),
         sa.Column("runner_up", _Text),
         sa.Column("runner_up_score", _Real),
         sa.Column("box", _Text),
         # v6: which station saw it, and an id made where it was seen, so that an
         # event queued while the server was away is stored once however often sent
         _text_default("station"),
         sa.Column("uid", _Text),
         # v7: who the nearest and runner-up names were, so that deleting a person
         # clears them whatever name they had then
         sa.Column("nearest_id", _Id),
         sa.Column("runner_up_id", _Id),
         sa.Index("events_time", "time"),
         sa.Index("events_person", "person_id", "time"),
         sa.Index("events_unknown", "time", sqlite_where=sa.text("name IS NULL"),
                  postgresql_where=sa.text("name IS NULL")),
         sa.Index("events_uid", "uid", unique=True),
         sa.Index("events_station", "station", "time"))
sa.Table("unknown_clusters", METADATA,
         _pk(),
         sa.Column("created", _Text, nullable=False),
         _flag("ignored"))
sa.Table("unknown_faces", METADATA,
         _pk(),
         sa.Column("cluster_id", _Id, sa.ForeignKey("unknown_clusters.id", ondelete="CASCADE"),
                   nullable=False),
         sa.Column("seen", _Text, nullable=False),
         _text_default("source"),
         sa.Column("path", _Text),
         sa.Column("box", _Text),
         sa.Column("crop", _Blob, nullable=False),
         sa.Column("landmarks", _Text, nullable=False),
         sa.Column("quality", _Real, nullable=False),
         _flag("enrollable"),
         sa.Column("model_id", _Text, nullable=False),
         sa.Column("dim", _Int, sa.CheckConstraint("dim > 0"), nullable=False),
         sa.Column("vector", _Blob, sa.CheckConstraint("length(vector) = 4 * dim"),
                   nullable=False),
         sa.Column("content_hash", _Blob, nullable=False, unique=True),
         # v7: the event that recorded it; naming its cluster makes that event the
         # person's (so deleting the person deletes it)
         sa.Column("event_uid", _Text),
         sa.Index("unknown_faces_seen", "seen"),
         sa.Index("unknown_faces_cluster", "cluster_id"))
sa.Table("sightings", METADATA,
         _pk(),
         sa.Column("path", _Text, nullable=False),
         sa.Column("person_id", _Id, sa.ForeignKey("people.id", ondelete="CASCADE")),
         sa.Column("unknown_id", _Id, sa.ForeignKey("unknown_faces.id", ondelete="CASCADE")),
         sa.Column("box", _Text, nullable=False),
         sa.Column("score", _Real),
         sa.Column("scanned", _Text, nullable=False),
         sa.CheckConstraint("(person_id IS NULL) <> (unknown_id IS NULL)"),
         sa.Index("sightings_path", "path"),
         sa.Index("sightings_person", "person_id", sqlite_where=sa.text("person_id IS NOT NULL"),
                  postgresql_where=sa.text("person_id IS NOT NULL")),
         sa.Index("sightings_unknown", "unknown_id",
                  sqlite_where=sa.text("unknown_id IS NOT NULL"),
                  postgresql_where=sa.text("unknown_id IS NOT NULL")))
sa.Table("scanned_files", METADATA,
         sa.Column("path", _Text, primary_key=True, nullable=True),
         sa.Column("size", _Int, nullable=False),
         sa.Column("mtime", _Real, nullable=False),
         sa.Column("faces", _Int, nullable=False),
         sa.Column("scanned", _Text, nullable=False))
# v7: who to be alerted about (person_id NULL: any unknown face), on which camera
# ('' any; else a source, its file name or a station) and outside which quiet hours
# (local "HH:MM-HH:MM"; '' none)
sa.Table("watch_list", METADATA,
         _pk(),
         sa.Column("person_id", _Id, sa.ForeignKey("people.id", ondelete="CASCADE")),
         _text_default("camera"),
         _text_default("quiet"),
         sa.Column("created", _Text, nullable=False),
         sa.Index("watch_list_person", "person_id"))
# v7: the alerts sent; the face picture is their event's (event_uid), so that deleting
# the person or the unknown faces' retention takes it with the event
sa.Table("alerts", METADATA,
         _pk(),
         sa.Column("time", _Text, nullable=False),
         sa.Column("person_id", _Id, sa.ForeignKey("people.id", ondelete="CASCADE")),
         sa.Column("name", _Text),
         sa.Column("score", _Real),
         _text_default("camera"),
         _text_default("station"),
         sa.Column("track", _Int),
         sa.Column("event_uid", _Text),
         sa.Column("acknowledged", _Text),
         sa.Index("alerts_time", "time"),
         sa.Index("alerts_person", "person_id", "time"))


def _dialect(name: str):
    if name == "sqlite":
        return sa_sqlite.dialect()
    if name == "postgresql":
        return sa_postgresql.dialect()
    raise ValueError(f"unknown dialect {name!r}")


def create_statements(dialect: str) -> list[str]:
    """The DDL that creates an empty gallery of this version on this backend."""
    target = _dialect(dialect)
    statements, deferred = [], []
    for table in METADATA.sorted_tables:
        statements.append(str(CreateTable(table).compile(dialect=target)))
        statements.extend(str(CreateIndex(ix).compile(dialect=target))
                          for ix in sorted(table.indexes, key=lambda ix: ix.name))
        if dialect != "sqlite":  # SQLite writes them inline (it allows forward keys)
            # isolate_from_table=False: rendering the ALTER must not take the key out
            # of the next CREATE TABLE rendered for SQLite
            deferred.extend(str(AddConstraint(fk.constraint, isolate_from_table=False)
                                  .compile(dialect=target))
                            for fk in table.foreign_keys if fk.use_alter)
    return statements + deferred
