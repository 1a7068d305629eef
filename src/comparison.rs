//! Two queries' rows compared as sets, both ways at once: what
//! `left EXCEPT right` and `right EXCEPT left` would count, reading each
//! side once. SQLite's EXCEPT builds a b-tree of whole rows for one side and
//! probes it with the other, once per direction; here every row becomes a
//! 128-bit BLAKE3 digest of its values, the digests are sorted partition by
//! partition and merged (docs/PERFORMANCE.md measures both). Past a few MiB
//! the digests go to an unnamed temporary file, so memory stays flat on
//! millions of rows.
//!
//! Values compare as SQLite's EXCEPT compares them with the BINARY
//! collation: by storage class and bytes, NULL equal to NULL, and an integer
//! equal to a real of the same value. A column's own collation (`NOCASE`)
//! is not applied.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;

use rusqlite::types::ValueRef;

/// The digests of one side kept in memory before they go to the temporary file.
const HELD: usize = 1 << 19;
/// Digests are sorted and merged in this many partitions (by their top bits).
const PARTITION_BITS: u32 = 6;
const PARTITIONS: usize = 1 << PARTITION_BITS;
/// Differing rows remembered for showing; counting has no limit.
const REMEMBERED: usize = 1 << 16;

/// What the two sides hold, as sets of distinct rows.
#[derive(Debug, Default, serde::Serialize)]
pub struct Comparison {
    pub left_rows: u64,
    pub right_rows: u64,
    pub only_left: u64,
    pub only_right: u64,
    #[serde(skip)]
    pub only_left_digests: HashSet<u128>,
    #[serde(skip)]
    pub only_right_digests: HashSet<u128>,
}

/// Digests of one side's rows, partitioned, partly on disk.
pub struct Digests {
    held: Vec<Vec<u128>>,
    count: usize,
    spill: Option<File>,
    written: u64,
    /// Per partition: (offset, number of digests) of each run in `spill`.
    runs: Vec<Vec<(u64, usize)>>,
}

impl Default for Digests {
    fn default() -> Digests {
        Digests {
            held: vec![Vec::new(); PARTITIONS],
            count: 0,
            spill: None,
            written: 0,
            runs: vec![Vec::new(); PARTITIONS],
        }
    }
}

impl Digests {
    /// Adds one row's digest.
    pub fn add(&mut self, digest: u128) -> io::Result<()> {
        self.held[partition(digest)].push(digest);
        self.count += 1;
        if self.count >= HELD {
            self.spill()?;
        }
        Ok(())
    }

    fn spill(&mut self) -> io::Result<()> {
        let file = match &mut self.spill {
            Some(f) => f,
            None => self.spill.insert(tempfile::tempfile()?),
        };
        let mut out = io::BufWriter::with_capacity(1 << 16, &*file);
        for (p, digests) in self.held.iter_mut().enumerate() {
            if digests.is_empty() {
                continue;
            }
            for d in digests.iter() {
                out.write_all(&d.to_le_bytes())?;
            }
            self.runs[p].push((self.written, digests.len()));
            self.written += 16 * digests.len() as u64;
            digests.clear();
        }
        out.flush()?;
        self.count = 0;
        Ok(())
    }

    /// One partition's digests, sorted, each once.
    fn partition(&mut self, p: usize) -> io::Result<Vec<u128>> {
        let mut all = std::mem::take(&mut self.held[p]);
        if let Some(file) = &self.spill {
            let mut bytes = Vec::new();
            for &(offset, n) in &self.runs[p] {
                bytes.resize(16 * n, 0);
                file.read_exact_at(&mut bytes, offset)?;
                all.extend(
                    bytes
                        .chunks_exact(16)
                        .map(|c| u128::from_le_bytes(c.try_into().unwrap_or_default())),
                );
            }
        }
        all.sort_unstable();
        all.dedup();
        Ok(all)
    }
}

/// Merges both sides partition by partition.
pub fn compare(left: &mut Digests, right: &mut Digests) -> io::Result<Comparison> {
    let mut c = Comparison::default();
    for p in 0..PARTITIONS {
        let l = left.partition(p)?;
        let r = right.partition(p)?;
        c.left_rows += l.len() as u64;
        c.right_rows += r.len() as u64;
        let (mut i, mut j) = (0, 0);
        while i < l.len() || j < r.len() {
            match (l.get(i), r.get(j)) {
                (Some(a), Some(b)) if a == b => {
                    i += 1;
                    j += 1;
                }
                (Some(a), b) if b.is_none_or(|b| a < b) => {
                    c.only_left += 1;
                    remember(&mut c.only_left_digests, *a);
                    i += 1;
                }
                (_, Some(b)) => {
                    c.only_right += 1;
                    remember(&mut c.only_right_digests, *b);
                    j += 1;
                }
                (_, None) => break,
            }
        }
    }
    Ok(c)
}

fn remember(set: &mut HashSet<u128>, digest: u128) {
    if set.len() < REMEMBERED {
        set.insert(digest);
    }
}

fn partition(digest: u128) -> usize {
    (digest >> (128 - PARTITION_BITS)) as usize
}

/// Digests rows, reusing one buffer for their encoding.
#[derive(Default)]
pub struct RowDigest {
    buf: Vec<u8>,
}

impl RowDigest {
    /// A row's first `columns` values, each tagged with its storage class
    /// and length-prefixed, so that no two different rows encode alike.
    pub fn of(&mut self, row: &rusqlite::Row<'_>, columns: usize) -> rusqlite::Result<u128> {
        self.buf.clear();
        encode(&mut self.buf, row, columns)?;
        Ok(digest(&self.buf))
    }
}

fn digest(encoded: &[u8]) -> u128 {
    let hash = blake3::hash(encoded);
    let mut first = [0u8; 16];
    first.copy_from_slice(&hash.as_bytes()[..16]);
    u128::from_be_bytes(first)
}

/// Why a side could not be read.
#[derive(Debug)]
pub enum Error {
    Sql(rusqlite::Error),
    Spill(io::Error),
}

/// Rows encoded on the reading thread, digested on the other.
#[derive(Default)]
struct Batch {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

const BATCH_ROWS: usize = 4096;

/// Every row of `rows`, digested. SQLite steps through the rows on this
/// thread while another hashes and partitions them: the two cores share
/// what SQLite's EXCEPT does on one.
pub fn digest_rows(rows: &mut rusqlite::Rows<'_>, columns: usize) -> Result<Digests, Error> {
    std::thread::scope(|scope| {
        let (full, to_hash) = std::sync::mpsc::sync_channel::<Batch>(4);
        let (emptied, to_fill) = std::sync::mpsc::channel::<Batch>();
        let hasher = scope.spawn(move || -> io::Result<Digests> {
            let mut digests = Digests::default();
            for mut batch in to_hash {
                let mut start = 0;
                for &end in &batch.ends {
                    digests.add(digest(&batch.bytes[start..end]))?;
                    start = end;
                }
                batch.bytes.clear();
                batch.ends.clear();
                // The reader may have finished and gone: nothing to reuse then.
                let _ = emptied.send(batch);
            }
            Ok(digests)
        });
        let mut batch = Batch::default();
        let read = (|| {
            while let Some(row) = rows.next()? {
                encode(&mut batch.bytes, row, columns)?;
                batch.ends.push(batch.bytes.len());
                if batch.ends.len() == BATCH_ROWS {
                    let next = to_fill.try_recv().unwrap_or_default();
                    if full.send(std::mem::replace(&mut batch, next)).is_err() {
                        break; // the hasher stopped: its error says why
                    }
                }
            }
            let _ = full.send(batch);
            Ok(())
        })();
        drop(full);
        let hashed = hasher
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        read.map_err(Error::Sql)?;
        hashed.map_err(Error::Spill)
    })
}

/// Appends a row's encoding to `buf`.
fn encode(buf: &mut Vec<u8>, row: &rusqlite::Row<'_>, columns: usize) -> rusqlite::Result<()> {
    for i in 0..columns {
        match row.get_ref(i)? {
            ValueRef::Null => buf.push(b'n'),
            ValueRef::Integer(n) => integer(buf, n),
            ValueRef::Real(x) => {
                // EXCEPT finds 2 and 2.0 equal: a real that is an integer
                // is encoded as that integer.
                if x.fract() == 0.0 && x >= i64::MIN as f64 && x < i64::MAX as f64 {
                    integer(buf, x as i64)
                } else {
                    buf.push(b'r');
                    buf.extend_from_slice(&x.to_bits().to_le_bytes());
                }
            }
            ValueRef::Text(t) => bytes(buf, b't', t),
            ValueRef::Blob(b) => bytes(buf, b'b', b),
        }
    }
    Ok(())
}

fn integer(buf: &mut Vec<u8>, n: i64) {
    buf.push(b'i');
    buf.extend_from_slice(&n.to_le_bytes());
}

fn bytes(buf: &mut Vec<u8>, tag: u8, value: &[u8]) {
    buf.push(tag);
    buf.extend_from_slice(&(value.len() as u64).to_le_bytes());
    buf.extend_from_slice(value);
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

    fn digests(conn: &Connection, sql: &str) -> Digests {
        let mut stmt = conn.prepare(sql).unwrap();
        let n = stmt.column_count();
        let d = digest_rows(&mut stmt.raw_query(), n).unwrap();
        d
    }

    /// The counts agree with SQLite's own EXCEPT on values chosen to trip a
    /// careless encoding: NULLs, 2 against 2.0, '2' against 2, a blob
    /// against the same bytes as text, a name that runs into the next
    /// column, duplicates; and on more rows than are held in memory.
    #[test]
    fn counts_what_except_counts_in_memory_and_spilled() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE l(a, b); CREATE TABLE r(a, b);
             INSERT INTO l VALUES (NULL, NULL), (2, 'x'), ('2', 'x'), (X'6162', 1), ('ab', 1),
               ('a', 'bc'), (1.5, NULL), (7, 7), (7, 7), (-0.0, 1);
             INSERT INTO r VALUES (NULL, NULL), (2.0, 'x'), (X'6162', 1), ('ab', '1'),
               ('ab', 'c'), (1.5, NULL), (9, 9), (0, 1);",
        )
        .unwrap();
        let agrees_with_except = |c: &Comparison| {
            let count = |sql: &str| -> u64 {
                conn.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap() as u64
            };
            let except = |a: &str, b: &str| {
                count(&format!(
                    "SELECT count(*) FROM (SELECT a, b FROM {a} EXCEPT SELECT a, b FROM {b})"
                ))
            };
            assert_eq!(c.only_left, except("l", "r"));
            assert_eq!(c.only_right, except("r", "l"));
            assert_eq!(
                c.left_rows,
                count("SELECT count(*) FROM (SELECT DISTINCT a, b FROM l)")
            );
            assert_eq!(
                c.right_rows,
                count("SELECT count(*) FROM (SELECT DISTINCT a, b FROM r)")
            );
        };
        let c = compare(
            &mut digests(&conn, "SELECT a, b FROM l"),
            &mut digests(&conn, "SELECT a, b FROM r"),
        )
        .unwrap();
        agrees_with_except(&c);
        assert_eq!((c.only_left, c.only_right), (4, 3));

        conn.execute_batch(&format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {})
             INSERT INTO l SELECT 'f' || i, i % 7 FROM n;
             INSERT INTO r SELECT a, b FROM l WHERE a LIKE 'f%' AND rowid % 1000 <> 0;",
            HELD + HELD / 2
        ))
        .unwrap();
        let mut left = digests(&conn, "SELECT a, b FROM l");
        assert!(left.spill.is_some(), "more rows than are held must spill");
        let c = compare(&mut left, &mut digests(&conn, "SELECT a, b FROM r")).unwrap();
        agrees_with_except(&c);
    }
}
