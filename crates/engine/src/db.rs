//! The metadata database: SQLite in WAL mode, one file under the data root.
//!
//! Schema (version 1), drawn as a tree:
//! ```text
//! meta            key -> value                 ("schema_version")
//! images          id (config digest) -> data (ImageRecord JSON)
//!   image_layers  (image_id, idx) -> chain_id, diff_id, blob digest/size/media type
//!   tags          name ("repo:tag", normalised) -> image_id
//!   repo_digests  name ("repo@sha256:...") -> image_id
//! containers      id -> name (unique), data (ContainerRecord JSON)
//! networks        id -> name (unique), data (NetworkRecord JSON)
//! volumes         name -> data (VolumeRecord JSON)
//! build_cache     key -> data (cached build step JSON)
//! ```
//! Blobs and snapshots live on the filesystem; the rows above are the references that
//! garbage collection follows. Every multi-row change runs in one transaction, so a
//! `kill -9` leaves either the old or the new state.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::{params, Connection, OptionalExtension};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{EngineError, Result};

const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS images (id TEXT PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS image_layers (
    image_id TEXT NOT NULL, idx INTEGER NOT NULL, chain_id TEXT NOT NULL, diff_id TEXT NOT NULL,
    blob TEXT, blob_size INTEGER, media_type TEXT, PRIMARY KEY (image_id, idx));
CREATE INDEX IF NOT EXISTS image_layers_chain ON image_layers(chain_id);
CREATE TABLE IF NOT EXISTS tags (name TEXT PRIMARY KEY, image_id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS repo_digests (name TEXT PRIMARY KEY, image_id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS containers (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS networks (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS volumes (name TEXT PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS build_cache (key TEXT PRIMARY KEY, data TEXT NOT NULL);
";

/// One layer row of an image, bottom first.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct LayerRow {
    /// The snapshot name (OCI chain id) holding this layer unpacked.
    pub chain_id: String,
    /// Digest of the uncompressed tar.
    pub diff_id: String,
    /// Digest of the blob in the content store, if we have it.
    pub blob: Option<String>,
    /// Size of that blob.
    pub blob_size: Option<i64>,
    /// Media type of that blob.
    pub media_type: Option<String>,
}

/// The metadata database handle; cheap to share behind an `Arc`.
pub struct Db {
    conn: Mutex<Connection>,
}

impl Db {
    /// Opens (creating if needed) the database at `path` and migrates it to this version.
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        let version: Option<String> = conn
            .query_row(
                "SELECT value FROM meta WHERE key='schema_version'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        match version.map(|v| v.parse::<i64>()) {
            None => {
                conn.execute(
                    "INSERT INTO meta(key, value) VALUES ('schema_version', ?1)",
                    params![SCHEMA_VERSION.to_string()],
                )?;
            }
            Some(Ok(v)) if v <= SCHEMA_VERSION => {}
            Some(_) => {
                return Err(EngineError::internal(format!(
                    "metadata database {} was written by a newer berthd",
                    path.display()
                )))
            }
        }
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    /// Locks the connection for a sequence of statements.
    pub fn lock(&self) -> MutexGuard<'_, Connection> {
        match self.conn.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Reads one JSON `data` column from `table` by its key column.
    pub fn get<T: DeserializeOwned>(
        &self,
        table: &str,
        key_col: &str,
        key: &str,
    ) -> Result<Option<T>> {
        let conn = self.lock();
        let sql = format!("SELECT data FROM {table} WHERE {key_col} = ?1");
        let data: Option<String> = conn
            .query_row(&sql, params![key], |r| r.get(0))
            .optional()?;
        data.map(|d| serde_json::from_str(&d).map_err(EngineError::from))
            .transpose()
    }

    /// Reads every JSON `data` column of `table`.
    pub fn all<T: DeserializeOwned>(&self, table: &str) -> Result<Vec<T>> {
        let conn = self.lock();
        let mut stmt = conn.prepare(&format!("SELECT data FROM {table}"))?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for row in rows {
            out.push(serde_json::from_str(&row?)?);
        }
        Ok(out)
    }

    /// Deletes a row of `table` by its key column.
    pub fn delete(&self, table: &str, key_col: &str, key: &str) -> Result<()> {
        let conn = self.lock();
        conn.execute(
            &format!("DELETE FROM {table} WHERE {key_col} = ?1"),
            params![key],
        )?;
        Ok(())
    }

    /// Inserts or replaces a row keyed by a single column holding JSON data (volumes, cache).
    pub fn put_keyed<T: Serialize>(
        &self,
        table: &str,
        key_col: &str,
        key: &str,
        data: &T,
    ) -> Result<()> {
        let json = serde_json::to_string(data)?;
        let conn = self.lock();
        conn.execute(
            &format!("INSERT OR REPLACE INTO {table} ({key_col}, data) VALUES (?1, ?2)"),
            params![key, json],
        )?;
        Ok(())
    }

    /// Inserts or replaces a row with an id, a unique name and JSON data (containers,
    /// networks). A name taken by another id fails with a conflict error.
    pub fn put_named<T: Serialize>(
        &self,
        table: &str,
        id: &str,
        name: &str,
        data: &T,
    ) -> Result<()> {
        let json = serde_json::to_string(data)?;
        let conn = self.lock();
        let owner: Option<String> = conn
            .query_row(
                &format!("SELECT id FROM {table} WHERE name = ?1"),
                params![name],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(owner) = owner {
            if owner != id {
                return Err(EngineError::conflict(format!(
                    "Conflict. The name \"/{}\" is already in use by {} \"{owner}\". You have to remove (or rename) that {} to be able to reuse that name.",
                    name.trim_start_matches('/'),
                    table.trim_end_matches('s'),
                    table.trim_end_matches('s')
                )));
            }
        }
        conn.execute(
            &format!("INSERT OR REPLACE INTO {table} (id, name, data) VALUES (?1, ?2, ?3)"),
            params![id, name, json],
        )?;
        Ok(())
    }

    /// Records an image with its layers, atomically.
    pub fn put_image<T: Serialize>(&self, id: &str, data: &T, layers: &[LayerRow]) -> Result<()> {
        let json = serde_json::to_string(data)?;
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT OR REPLACE INTO images (id, data) VALUES (?1, ?2)",
            params![id, json],
        )?;
        tx.execute("DELETE FROM image_layers WHERE image_id = ?1", params![id])?;
        for (i, l) in layers.iter().enumerate() {
            tx.execute(
                "INSERT INTO image_layers (image_id, idx, chain_id, diff_id, blob, blob_size, media_type)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![id, i as i64, l.chain_id, l.diff_id, l.blob, l.blob_size, l.media_type],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The layers of an image, bottom first.
    pub fn image_layers(&self, id: &str) -> Result<Vec<LayerRow>> {
        let conn = self.lock();
        let mut stmt = conn.prepare(
            "SELECT chain_id, diff_id, blob, blob_size, media_type FROM image_layers
             WHERE image_id = ?1 ORDER BY idx",
        )?;
        let rows = stmt.query_map(params![id], |r| {
            Ok(LayerRow {
                chain_id: r.get(0)?,
                diff_id: r.get(1)?,
                blob: r.get(2)?,
                blob_size: r.get(3)?,
                media_type: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Removes an image row, its layers, tags and digests, atomically.
    pub fn delete_image(&self, id: &str) -> Result<()> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        tx.execute("DELETE FROM images WHERE id = ?1", params![id])?;
        tx.execute("DELETE FROM image_layers WHERE image_id = ?1", params![id])?;
        tx.execute("DELETE FROM tags WHERE image_id = ?1", params![id])?;
        tx.execute("DELETE FROM repo_digests WHERE image_id = ?1", params![id])?;
        tx.commit()?;
        Ok(())
    }

    /// Points `name` (in `tags` or `repo_digests`) at an image.
    pub fn set_ref(&self, table: &str, name: &str, image_id: &str) -> Result<()> {
        let conn = self.lock();
        conn.execute(
            &format!("INSERT OR REPLACE INTO {table} (name, image_id) VALUES (?1, ?2)"),
            params![name, image_id],
        )?;
        Ok(())
    }

    /// The image a name in `tags` or `repo_digests` points at.
    pub fn get_ref(&self, table: &str, name: &str) -> Result<Option<String>> {
        let conn = self.lock();
        Ok(conn
            .query_row(
                &format!("SELECT image_id FROM {table} WHERE name = ?1"),
                params![name],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Every (name, image id) pair of `tags` or `repo_digests`.
    pub fn all_refs(&self, table: &str) -> Result<Vec<(String, String)>> {
        let conn = self.lock();
        let mut stmt =
            conn.prepare(&format!("SELECT name, image_id FROM {table} ORDER BY name"))?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Removes one name from `tags` or `repo_digests`.
    pub fn delete_ref(&self, table: &str, name: &str) -> Result<()> {
        self.delete(table, "name", name)
    }

    /// Whether any image still uses the snapshot `chain_id`.
    pub fn chain_in_use(&self, chain_id: &str) -> Result<bool> {
        let conn = self.lock();
        let n: i64 = conn.query_row(
            "SELECT COUNT(*) FROM image_layers WHERE chain_id = ?1",
            params![chain_id],
            |r| r.get(0),
        )?;
        Ok(n > 0)
    }

    /// Whether any image still references the blob `digest`.
    pub fn blob_in_use(&self, digest: &str) -> Result<bool> {
        let conn = self.lock();
        let n: i64 = conn.query_row(
            "SELECT COUNT(*) FROM image_layers WHERE blob = ?1",
            params![digest],
            |r| r.get(0),
        )?;
        let m: i64 = conn.query_row(
            "SELECT COUNT(*) FROM images WHERE id = ?1 OR data LIKE ?2",
            params![digest, format!("%{digest}%")],
            |r| r.get(0),
        )?;
        Ok(n + m > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_per_table() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("meta.db")).unwrap();
        db.put_named("containers", "a", "web", &1).unwrap();
        db.put_named("containers", "a", "web", &2).unwrap();
        let err = db.put_named("containers", "b", "web", &3).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Conflict);
        assert!(err.to_string().contains("already in use"), "{err}");
        let all: Vec<i32> = db.all("containers").unwrap();
        assert_eq!(all, vec![2]);
    }

    #[test]
    fn image_rows_and_layers_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("meta.db")).unwrap();
        let layer = LayerRow {
            chain_id: "sha256:c".into(),
            diff_id: "sha256:d".into(),
            blob: Some("sha256:b".into()),
            blob_size: Some(3),
            media_type: None,
        };
        db.put_image("sha256:i", &"cfg", std::slice::from_ref(&layer))
            .unwrap();
        db.set_ref("tags", "busybox:1", "sha256:i").unwrap();
        assert_eq!(db.image_layers("sha256:i").unwrap(), vec![layer]);
        assert!(db.chain_in_use("sha256:c").unwrap());
        db.delete_image("sha256:i").unwrap();
        assert!(!db.chain_in_use("sha256:c").unwrap());
        assert_eq!(db.get_ref("tags", "busybox:1").unwrap(), None);
        // Reopening keeps the schema version.
        drop(db);
        Db::open(&dir.path().join("meta.db")).unwrap();
    }
}
