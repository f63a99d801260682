"""A minimal crash-safe vector store, as an example of the techniques rag uses.

Vectors live in a FAISS index file and metadata in SQLite. A new generation of
the FAISS file is written to a temporary name, fsynced and renamed; only then
is the SQLite transaction that points at the new generation committed. A crash
at any moment leaves the previous generation usable.
"""

import os
import sqlite3

import faiss
import numpy as np


def atomic_write_index(index, path):
    """Write a FAISS index so readers see the old or the new file, never half of one."""
    tmp = path + ".tmp"
    faiss.write_index(index, tmp)
    fd = os.open(tmp, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
    os.replace(tmp, path)


class TinyStore:
    """Keeps chunk text in SQLite and vectors in an ID-mapped flat inner-product index."""

    def __init__(self, folder, dim=384):
        self.folder = folder
        self.db = sqlite3.connect(os.path.join(folder, "store.sqlite"))
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS chunks (id INTEGER PRIMARY KEY, text TEXT)")
        self.index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))

    def add(self, texts, vectors):
        """Insert texts and their L2-normalised vectors; ids come from SQLite rowids."""
        ids = []
        for text in texts:
            cur = self.db.execute("INSERT INTO chunks(text) VALUES (?)", (text,))
            ids.append(cur.lastrowid)
        self.index.add_with_ids(np.asarray(vectors, dtype=np.float32), np.asarray(ids, dtype=np.int64))
        return ids

    def commit(self, generation):
        atomic_write_index(self.index, os.path.join(self.folder, f"vectors-{generation}.faiss"))
        self.db.execute("INSERT OR REPLACE INTO chunks(id, text) VALUES (-1, ?)", (str(generation),))
        self.db.commit()

    def search(self, query_vector, k=5):
        """Return (id, score, text) for the k most similar chunks."""
        scores, ids = self.index.search(np.asarray([query_vector], dtype=np.float32), k)
        rows = []
        for i, s in zip(ids[0], scores[0]):
            if i < 0:
                continue
            text = self.db.execute("SELECT text FROM chunks WHERE id = ?", (int(i),)).fetchone()[0]
            rows.append((int(i), float(s), text))
        return rows
