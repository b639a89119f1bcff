//! The baseline store: what a model produced, keyed by everything that
//! determines it, in SQLite (WAL mode, safe for concurrent writers).
//!
//! Key: (determinism version, model sha256, tokenizer sha256, prompt hash,
//! parameters hash, seed). A lookup never crosses determinism versions.

use crate::error::{Error, Result};
use rusqlite::{params, Connection, OptionalExtension};
use std::path::{Path, PathBuf};

/// PRAGMA application_id of our stores ("ieB1").
const APPLICATION_ID: i32 = 0x6965_4231;
const SCHEMA_VERSION: i32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    pub determinism_version: u32,
    pub model_sha256: String,
    pub tokenizer_sha256: String,
    /// sha256 of every token id that determines the output.
    pub prompt_hash: String,
    /// sha256 of the effective sampling parameters, stop tokens and task kind.
    pub params_hash: String,
    pub seed: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub output_ids: Vec<u32>,
    pub digest: String,
    pub logits_digest: Option<String>,
    /// Generation: log p of each chosen token. Multiple choice: the choices' log-likelihoods.
    pub logprobs: Vec<f64>,
    pub run: String,
    pub created_at: String,
}

pub struct Store {
    conn: Connection,
    path: PathBuf,
}

/// What `record` did with one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    New,
    Same,
    /// The key exists with another digest: the engine is not deterministic,
    /// or the key misses something. The stored entry is kept.
    Conflict,
}

pub fn default_path() -> PathBuf {
    crate::fetch::cache_dir().join("baselines.sqlite")
}

fn u32s_to_blob(v: &[u32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn f64s_to_blob(v: &[f64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_bits().to_le_bytes()).collect()
}

impl Store {
    /// Open or create a store. A file that is not one of ours (another
    /// schema, or not SQLite at all) is an error and is left untouched.
    pub fn open(path: &Path) -> Result<Self> {
        let err = |m: String| Error::bad_file(path, m);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let mut conn = Connection::open(path)
            .map_err(|e| err(format!("cannot open the baseline store: {e}")))?;
        conn.busy_timeout(std::time::Duration::from_secs(60))
            .map_err(|e| err(e.to_string()))?;
        // Inspect and, if empty, initialise under one write lock, so that two
        // processes opening a new store at once cannot both create it, nor
        // mistake a half-created one for a foreign file.
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| {
                err(format!(
                    "not a usable SQLite database ({e}); it was left untouched"
                ))
            })?;
        let app: i32 = tx
            .query_row("PRAGMA application_id", [], |r| r.get(0))
            .map_err(|e| err(e.to_string()))?;
        let tables: i64 = tx
            .query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| r.get(0))
            .map_err(|e| {
                err(format!(
                    "not a readable SQLite database ({e}); it was left untouched"
                ))
            })?;
        if app == APPLICATION_ID {
            let v: i32 = tx
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .map_err(|e| err(e.to_string()))?;
            if v != SCHEMA_VERSION {
                return Err(err(format!(
                    "baseline store schema version {v}, this infer-eval reads {SCHEMA_VERSION}"
                )));
            }
        } else if app == 0 && tables == 0 {
            tx.execute_batch(&format!(
                "CREATE TABLE outputs (
                    determinism_version INTEGER NOT NULL,
                    model_sha256 TEXT NOT NULL,
                    tokenizer_sha256 TEXT NOT NULL,
                    prompt_hash TEXT NOT NULL,
                    params_hash TEXT NOT NULL,
                    seed INTEGER NOT NULL,
                    output_ids BLOB NOT NULL,
                    digest TEXT NOT NULL,
                    logits_digest TEXT,
                    logprobs BLOB NOT NULL,
                    run TEXT NOT NULL,
                    created_at TEXT NOT NULL,
                    PRIMARY KEY (determinism_version, model_sha256, tokenizer_sha256, prompt_hash, params_hash, seed)
                 );
                 PRAGMA application_id = {APPLICATION_ID};
                 PRAGMA user_version = {SCHEMA_VERSION};"
            ))
            .map_err(|e| err(format!("cannot create the store: {e}")))?;
        } else {
            return Err(err(format!(
                "not an infer-eval baseline store (application_id {app:#x}, {tables} schema objects); it was left untouched"
            )));
        }
        tx.commit().map_err(|e| err(e.to_string()))?;
        // Switching to WAL needs a moment with no other writer; retry while busy.
        let start = std::time::Instant::now();
        loop {
            match conn
                .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0))
            {
                Ok(_) => break,
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::DatabaseBusy
                        && start.elapsed().as_secs() < 60 =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => return Err(err(format!("cannot enable WAL: {e}"))),
            }
        }
        // A store of ours must have the table we expect.
        conn.prepare("SELECT determinism_version, model_sha256, tokenizer_sha256, prompt_hash, params_hash, seed, output_ids, digest, logits_digest, logprobs, run, created_at FROM outputs LIMIT 0")
            .map_err(|e| err(format!("baseline store has an unexpected schema: {e}")))?;
        Ok(Store {
            conn,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn db_err(&self, e: rusqlite::Error) -> Error {
        Error::bad_file(&self.path, format!("baseline store: {e}"))
    }

    pub fn get(&self, k: &Key) -> Result<Option<Entry>> {
        self.conn
            .query_row(
                "SELECT output_ids, digest, logprobs, run, created_at, logits_digest FROM outputs WHERE determinism_version = ?1 AND model_sha256 = ?2 AND tokenizer_sha256 = ?3 AND prompt_hash = ?4 AND params_hash = ?5 AND seed = ?6",
                params![k.determinism_version, k.model_sha256, k.tokenizer_sha256, k.prompt_hash, k.params_hash, k.seed as i64],
                |r| {
                    let ids: Vec<u8> = r.get(0)?;
                    let lp: Vec<u8> = r.get(2)?;
                    Ok(Entry {
                        output_ids: ids.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().unwrap())).collect(),
                        digest: r.get(1)?,
                        logprobs: lp.chunks_exact(8).map(|c| f64::from_bits(u64::from_le_bytes(c.try_into().unwrap()))).collect(),
                        run: r.get(3)?,
                        created_at: r.get(4)?,
                        logits_digest: r.get(5)?,
                    })
                },
            )
            .optional()
            .map_err(|e| self.db_err(e))
    }

    /// Record many entries in one transaction.
    pub fn record(&mut self, entries: &[(Key, Entry)]) -> Result<Vec<Recorded>> {
        let path = self.path.clone();
        let dberr =
            move |e: rusqlite::Error| Error::bad_file(&path, format!("baseline store: {e}"));
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(&dberr)?;
        let mut out = Vec::with_capacity(entries.len());
        {
            let mut ins = tx
                .prepare_cached(
                    "INSERT INTO outputs VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) ON CONFLICT DO NOTHING",
                )
                .map_err(&dberr)?;
            let mut sel = tx
                .prepare_cached("SELECT digest FROM outputs WHERE determinism_version = ?1 AND model_sha256 = ?2 AND tokenizer_sha256 = ?3 AND prompt_hash = ?4 AND params_hash = ?5 AND seed = ?6")
                .map_err(&dberr)?;
            for (k, e) in entries {
                let n = ins
                    .execute(params![
                        k.determinism_version,
                        k.model_sha256,
                        k.tokenizer_sha256,
                        k.prompt_hash,
                        k.params_hash,
                        k.seed as i64,
                        u32s_to_blob(&e.output_ids),
                        e.digest,
                        e.logits_digest,
                        f64s_to_blob(&e.logprobs),
                        e.run,
                        e.created_at
                    ])
                    .map_err(&dberr)?;
                out.push(if n == 1 {
                    Recorded::New
                } else {
                    let d: String = sel
                        .query_row(
                            params![
                                k.determinism_version,
                                k.model_sha256,
                                k.tokenizer_sha256,
                                k.prompt_hash,
                                k.params_hash,
                                k.seed as i64
                            ],
                            |r| r.get(0),
                        )
                        .map_err(&dberr)?;
                    if d == e.digest {
                        Recorded::Same
                    } else {
                        Recorded::Conflict
                    }
                });
            }
        }
        tx.commit().map_err(&dberr)?;
        Ok(out)
    }

    /// (determinism version, model sha256, entries, runs, newest timestamp)
    pub fn summary(&self) -> Result<Vec<(u32, String, usize, usize, String)>> {
        let mut st = self
            .conn
            .prepare("SELECT determinism_version, model_sha256, COUNT(*), COUNT(DISTINCT run), MAX(created_at) FROM outputs GROUP BY 1, 2 ORDER BY 1, 2")
            .map_err(|e| self.db_err(e))?;
        let rows = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, u32>(0)?,
                    r.get(1)?,
                    r.get::<_, i64>(2)? as usize,
                    r.get::<_, i64>(3)? as usize,
                    r.get(4)?,
                ))
            })
            .map_err(|e| self.db_err(e))?;
        rows.collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| self.db_err(e))
    }

    pub fn integrity_check(&self) -> Result<String> {
        self.conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .map_err(|e| self.db_err(e))
    }

    pub fn count(&self) -> Result<usize> {
        self.conn
            .query_row("SELECT COUNT(*) FROM outputs", [], |r| r.get::<_, i64>(0))
            .map(|n| n as usize)
            .map_err(|e| self.db_err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(v: u32, p: &str) -> Key {
        Key {
            determinism_version: v,
            model_sha256: "m".into(),
            tokenizer_sha256: "t".into(),
            prompt_hash: p.into(),
            params_hash: "s".into(),
            seed: 42,
        }
    }

    fn entry(d: &str) -> Entry {
        Entry {
            output_ids: vec![1, 2, 70000],
            digest: d.into(),
            logits_digest: Some("l".into()),
            logprobs: vec![-0.5, -1.25],
            run: "r".into(),
            created_at: "t".into(),
        }
    }

    #[test]
    fn round_trip_conflicts_and_versions() {
        let d = tempfile::tempdir().unwrap();
        let mut s = Store::open(&d.path().join("b.sqlite")).unwrap();
        assert_eq!(
            s.record(&[(key(1, "a"), entry("x"))]).unwrap(),
            vec![Recorded::New]
        );
        assert_eq!(
            s.record(&[(key(1, "a"), entry("x"))]).unwrap(),
            vec![Recorded::Same]
        );
        assert_eq!(
            s.record(&[(key(1, "a"), entry("y"))]).unwrap(),
            vec![Recorded::Conflict]
        );
        assert_eq!(s.get(&key(1, "a")).unwrap(), Some(entry("x")));
        // never across determinism versions
        assert_eq!(s.get(&key(2, "a")).unwrap(), None);
        drop(s);
        let s = Store::open(&d.path().join("b.sqlite")).unwrap();
        assert_eq!(s.count().unwrap(), 1);
        assert_eq!(s.integrity_check().unwrap(), "ok");
    }

    #[test]
    fn foreign_or_corrupt_files_are_refused_and_untouched() {
        let d = tempfile::tempdir().unwrap();
        let junk = d.path().join("junk.sqlite");
        std::fs::write(
            &junk,
            b"this is not a database, just some bytes that go on and on",
        )
        .unwrap();
        let before = std::fs::read(&junk).unwrap();
        let e = Store::open(&junk).err().unwrap().to_string();
        assert!(
            e.contains("junk.sqlite") && e.contains("left untouched"),
            "{e}"
        );
        assert_eq!(std::fs::read(&junk).unwrap(), before);
        let foreign = d.path().join("foreign.sqlite");
        let c = Connection::open(&foreign).unwrap();
        c.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
            .unwrap();
        drop(c);
        let before = std::fs::read(&foreign).unwrap();
        let e = Store::open(&foreign).err().unwrap().to_string();
        assert!(e.contains("not an infer-eval baseline store"), "{e}");
        assert_eq!(std::fs::read(&foreign).unwrap(), before);
    }
}
