//! The index: SQLite through a deadpool pool of our own manager, one transaction per
//! operation (a guard that rolls back on drop), and what a finished index holds.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::work::{IndexError, Meta};

/// One row of the index.
pub(super) struct FileRow {
    pub(super) path: String,
    pub(super) lines: Option<i64>,
    pub(super) words: Option<i64>,
    pub(super) tool: &'static str,
}

/// The index: `ops` (one row per committed operation, with its file count) and `files`,
/// written through a pool of SQLite connections.
///
/// The pool is deadpool's generic managed pool with a manager of our own (`Sqlite`
/// below): deadpool-sqlite and r2d2_sqlite pin rusqlite 0.40, and two rusqlite versions
/// cannot link two bundled SQLites. deadpool is async (waiting for a connection parks
/// the task, not a thread), says how many wait (what `Health` reports), and gives a
/// typed timeout when the pool is exhausted.
#[derive(Clone)]
pub struct Db {
    pub pool: DbPool,
    /// Inserts in small batches with a pause between them, so that a forced operation is
    /// caught in the middle of its transaction (S4's short-deadline run).
    slow_commits: bool,
}

/// The pool of connections to the index.
pub type DbPool = deadpool::managed::Pool<Sqlite>;

/// Connections in the pool.
pub const DB_CONNECTIONS: usize = 4;

/// How long a caller waits for a pooled connection before a typed error.
pub const DB_WAIT: Duration = Duration::from_secs(10);

/// Transactions rolled back because their operation was dropped (forced) in the middle.
pub static ROLLBACKS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Opens connections to one SQLite file; each waits up to 5 s for another's write lock.
pub struct Sqlite {
    path: PathBuf,
}

impl deadpool::managed::Manager for Sqlite {
    type Type = rusqlite::Connection;
    type Error = rusqlite::Error;

    async fn create(&self) -> Result<rusqlite::Connection, rusqlite::Error> {
        let conn = rusqlite::Connection::open(&self.path)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.execute_batch(PRAGMAS)?;
        Ok(conn)
    }

    async fn recycle(
        &self,
        conn: &mut rusqlite::Connection,
        _: &deadpool::managed::Metrics,
    ) -> deadpool::managed::RecycleResult<rusqlite::Error> {
        // A connection never goes back with a transaction open (`Tx` rolls back on drop);
        // should one, it is not reused.
        if conn.is_autocommit() {
            Ok(())
        } else {
            Err(deadpool::managed::RecycleError::message(
                "a transaction was left open",
            ))
        }
    }
}

const PRAGMAS: &str = "
PRAGMA synchronous = NORMAL;
PRAGMA cache_size = -1024;
";

const SCHEMA: &str = "
PRAGMA journal_mode = DELETE;
CREATE TABLE IF NOT EXISTS ops (
  op INTEGER PRIMARY KEY, repo TEXT NOT NULL, sha TEXT NOT NULL,
  files INTEGER NOT NULL, log_lines INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS files (
  op INTEGER NOT NULL, path TEXT NOT NULL, lines INTEGER, words INTEGER, tool TEXT NOT NULL);
";

/// A transaction on a pooled connection, held across awaits (rusqlite's `Transaction`
/// borrows its connection and cannot be): rolled back if dropped before `commit`.
struct Tx {
    conn: deadpool::managed::Object<Sqlite>,
    open: bool,
}

impl Tx {
    fn begin(conn: deadpool::managed::Object<Sqlite>) -> rusqlite::Result<Tx> {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        Ok(Tx { conn, open: true })
    }

    fn commit(mut self, shrink: bool) -> rusqlite::Result<()> {
        self.conn.execute_batch("COMMIT")?;
        self.open = false;
        if shrink {
            self.conn.execute_batch("PRAGMA shrink_memory")?;
        }
        Ok(())
    }
}

impl Drop for Tx {
    fn drop(&mut self) {
        if self.open {
            let _ = self.conn.execute_batch("ROLLBACK");
            ROLLBACKS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

impl Db {
    /// Opens (creating) the index at `path`, with a pool of [`DB_CONNECTIONS`], all of
    /// them opened now: the descriptors a run starts with are the ones it ends with.
    pub async fn open(path: &Path) -> Result<Db, IndexError> {
        rusqlite::Connection::open(path)?.execute_batch(SCHEMA)?;
        let pool = deadpool::managed::Pool::builder(Sqlite {
            path: path.to_path_buf(),
        })
        .max_size(DB_CONNECTIONS)
        .wait_timeout(Some(DB_WAIT))
        .runtime(deadpool::Runtime::Tokio1)
        .build()
        .map_err(|e| IndexError::PoolBuild(e.to_string()))?;
        let warm = futures_util::future::join_all((0..DB_CONNECTIONS).map(|_| pool.get())).await;
        for connection in warm {
            drop(connection?);
        }
        Ok(Db {
            pool,
            slow_commits: std::env::var_os(SLOW_COMMITS).is_some(),
        })
    }

    /// Committed operations so far.
    pub async fn committed(&self) -> Result<u64, IndexError> {
        let conn = self.pool.get().await?;
        Ok(tokio::task::block_in_place(|| {
            conn.query_row("SELECT count(*) FROM ops", [], |r| r.get::<_, i64>(0))
        })? as u64)
    }

    pub(super) async fn commit(
        &self,
        op: u64,
        repo: &str,
        meta: &Meta,
        rows: &[Vec<FileRow>],
        log_lines: u64,
    ) -> Result<(), IndexError> {
        let count: usize = rows.iter().map(Vec::len).sum();
        let conn = self.pool.get().await?;
        // SQLite is blocking; each step is short, and block_in_place lets the runtime
        // move other tasks off this worker meanwhile.
        let tx = tokio::task::block_in_place(|| {
            let tx = Tx::begin(conn)?;
            tx.conn.execute(
                "INSERT INTO ops (op, repo, sha, files, log_lines) VALUES (?1, ?2, ?3, ?4, ?5)",
                rusqlite::params![op as i64, repo, meta.sha, count as i64, log_lines as i64],
            )?;
            Ok::<_, rusqlite::Error>(tx)
        })?;
        let batch = if self.slow_commits {
            // The harness signals this child once it sees this line.
            println!("@@in-transaction {op}");
            1
        } else {
            usize::MAX
        };
        let all: Vec<&FileRow> = rows.iter().flatten().collect();
        for chunk in all.chunks(batch.max(1)) {
            tokio::task::block_in_place(|| {
                let mut insert = tx.conn.prepare_cached(
                    "INSERT INTO files (op, path, lines, words, tool) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?;
                for row in chunk {
                    insert.execute(rusqlite::params![
                        op as i64, row.path, row.lines, row.words, row.tool
                    ])?;
                }
                Ok::<_, rusqlite::Error>(())
            })?;
            if self.slow_commits {
                // A forced operation is dropped here, with its transaction open.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        // A big transaction fills the page cache: give it back after.
        tokio::task::block_in_place(|| tx.commit(count > 1000))?;
        Ok(())
    }
}

/// Set in a harness child's environment: commits insert one row at a time with a pause
/// after each, and say when a transaction begins.
pub const SLOW_COMMITS: &str = "LEAKPROOF_STRESS_SLOW_COMMITS";

/// What a finished index holds: read by the harness after a run, possibly after the
/// writer was SIGKILLed (opening it rolls back a hot journal).
#[derive(Debug, Default, serde::Serialize)]
pub struct DbCheck {
    pub integrity: String,
    pub ops: u64,
    pub files: u64,
    /// Operations whose file rows do not match their declared count: a transaction
    /// that was not atomic.
    pub partial_ops: u64,
    /// File rows without an operation.
    pub orphan_rows: u64,
}

impl DbCheck {
    pub fn read(path: &Path) -> rusqlite::Result<DbCheck> {
        let conn = rusqlite::Connection::open(path)?;
        conn.execute_batch(SCHEMA)?;
        let one = |sql: &str| {
            conn.query_row(sql, [], |r| r.get::<_, i64>(0))
                .map(|n| n as u64)
        };
        Ok(DbCheck {
            integrity: conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?,
            ops: one("SELECT count(*) FROM ops")?,
            files: one("SELECT count(*) FROM files")?,
            partial_ops: one(
                "SELECT count(*) FROM ops o WHERE o.files != (SELECT count(*) FROM files f WHERE f.op = o.op)",
            )?,
            orphan_rows: one(
                "SELECT count(*) FROM files f WHERE f.op NOT IN (SELECT op FROM ops)",
            )?,
        })
    }

    /// Integrity ok and every transaction whole.
    pub fn whole(&self) -> bool {
        self.integrity == "ok" && self.partial_ops == 0 && self.orphan_rows == 0
    }
}
