//! The back of a host's queue, beyond what the frontier keeps in memory: an
//! unnamed file in the state directory, appended at the back and read from
//! the front in blocks. The file has no name, so the kernel frees it when the
//! run ends, however it ends (kill -9 included); an interrupted crawl is
//! resumed from the store's frontier journal, not from here.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Write as _};
use std::os::unix::fs::FileExt;
use std::path::Path;

use tracing::warn;
use url::Url;

use super::{HostQueue, QueuedUrl, Spill, MAX_SPILL_FILES, REFILL};
use crate::ids::HostKey;

/// Bytes buffered before they are written.
const WRITE_BUF: usize = 64 * 1024;
/// Bytes read at a time (a block holds a few hundred URLs).
const READ_BLOCK: usize = 64 * 1024;

/// One host's spilled URLs, one line each: `depth attempt requeues url`
/// (a serialised URL holds no space or newline).
#[derive(Debug)]
pub struct SpillFile {
    file: File,
    /// Bytes in the file.
    written: u64,
    /// Lines not yet written to the file.
    buf: Vec<u8>,
    /// Where the first unread line starts.
    read: u64,
    /// Lines in the file and the buffer, not yet read.
    len: usize,
}

impl SpillFile {
    /// An empty spill file in `dir`.
    pub fn create(dir: &Path) -> io::Result<Self> {
        Ok(SpillFile {
            file: tempfile::tempfile_in(dir)?,
            written: 0,
            buf: Vec::with_capacity(WRITE_BUF),
            read: 0,
            len: 0,
        })
    }

    /// URLs waiting in the file.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Appends a URL at the back. On an error the URL is not in the file
    /// (the caller keeps it); the lines before it stay buffered.
    pub fn push(&mut self, q: &QueuedUrl) -> io::Result<()> {
        let before = self.buf.len();
        writeln!(
            self.buf,
            "{} {} {} {}",
            q.depth,
            q.attempt,
            q.requeues,
            q.url.as_str()
        )?;
        if self.buf.len() >= WRITE_BUF {
            if let Err(e) = self.flush() {
                self.buf.truncate(before);
                return Err(e);
            }
        }
        self.len += 1;
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.file.write_all_at(&self.buf, self.written)?;
            self.written += self.buf.len() as u64;
            self.buf.clear();
        }
        Ok(())
    }

    /// Moves up to `n` URLs from the front to `out`; returns how many lines
    /// it read (a line that no longer parses is dropped, and counted).
    pub fn take(&mut self, n: usize, out: &mut VecDeque<QueuedUrl>) -> io::Result<usize> {
        self.flush()?;
        let mut lines = 0;
        let mut block = vec![0u8; READ_BLOCK];
        while lines < n && self.read < self.written {
            let want = usize::try_from(self.written - self.read)
                .unwrap_or(usize::MAX)
                .min(block.len());
            self.file.read_exact_at(&mut block[..want], self.read)?;
            let mut consumed = 0;
            for line in block[..want].split_inclusive(|&b| b == b'\n') {
                if lines >= n || line.last() != Some(&b'\n') {
                    break;
                }
                consumed += line.len();
                lines += 1;
                if let Some(q) = parse(line) {
                    out.push_back(q);
                }
            }
            if consumed == 0 {
                // A line longer than the block: read a bigger one.
                block.resize(block.len() * 2, 0);
                continue;
            }
            self.read += consumed as u64;
        }
        self.len -= lines;
        if self.read == self.written {
            // Drained: start over, giving the disk space back.
            self.read = 0;
            self.written = 0;
            self.file.set_len(0)?;
        }
        Ok(lines)
    }
}

fn parse(line: &[u8]) -> Option<QueuedUrl> {
    let line = std::str::from_utf8(line).ok()?.trim_end_matches('\n');
    let mut parts = line.splitn(4, ' ');
    let depth = parts.next()?.parse().ok()?;
    let attempt = parts.next()?.parse().ok()?;
    let requeues = parts.next()?.parse().ok()?;
    let url = Url::parse(parts.next()?).ok()?;
    let host = HostKey::of(&url)?;
    Some(QueuedUrl {
        url,
        host,
        depth,
        attempt,
        requeues,
    })
}

/// Writes `q` to its host's file, opening one if it may; false when the
/// frontier keeps it in memory instead.
pub(super) fn spill_to(
    spill: &mut Spill,
    queue: &mut HostQueue,
    q: &QueuedUrl,
) -> std::io::Result<bool> {
    if queue.tail.is_none() {
        let Some(dir) = spill.dir.as_ref() else {
            return Ok(false);
        };
        if spill.failed || spill.files >= MAX_SPILL_FILES {
            return Ok(false);
        }
        queue.tail = Some(SpillFile::create(dir)?);
        spill.files += 1;
    }
    match queue.tail.as_mut() {
        Some(tail) if !spill.failed => tail.push(q).map(|()| true),
        _ => Ok(false),
    }
}

/// Reads the front of a host's file into memory. Returns how many URLs it
/// moved to memory and how many it dropped (lines that no longer parse, or
/// the whole file when it cannot be read).
pub(super) fn refill(queue: &mut HostQueue, host: &HostKey, spill: &mut Spill) -> (usize, usize) {
    let Some(tail) = queue.tail.as_mut() else {
        return (0, 0);
    };
    let (head, waiting) = (queue.head.len(), tail.len());
    match tail.take(REFILL, &mut queue.head) {
        Ok(lines) => {
            let moved = queue.head.len() - head;
            (moved, lines - moved)
        }
        Err(e) => {
            // What was read before the error is kept; the rest is lost.
            let moved = queue.head.len() - head;
            let lost = waiting - moved;
            warn!(%host, error = %e, lost, "The frontier could not read its queue \
                back from the state directory; the URLs it held are not fetched in this run.");
            queue.tail = None;
            spill.files -= 1;
            (moved, lost)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(i: usize) -> QueuedUrl {
        let url = Url::parse(&format!("http://a.test/p/{i}?q=x%20y")).expect("url");
        QueuedUrl {
            host: HostKey::of(&url).expect("host"),
            url,
            depth: (i % 7) as u32,
            attempt: (i % 3) as u32,
            requeues: (i % 2) as u32,
        }
    }

    #[test]
    fn urls_come_back_in_order_across_blocks_and_refills() {
        let dir = tempfile::tempdir().expect("dir");
        let mut spill = SpillFile::create(dir.path()).expect("spill");
        let mut out = VecDeque::new();
        let mut next = 0;
        // Interleave pushes and takes, past several write buffers and blocks.
        for round in 0..5 {
            for i in 0..4000 {
                spill.push(&queued(round * 4000 + i)).expect("push");
            }
            assert_eq!(spill.take(2500, &mut out).expect("take"), 2500);
            for q in out.drain(..) {
                assert_eq!(q, queued(next));
                next += 1;
            }
        }
        assert_eq!(spill.len(), 20_000 - next);
        while spill.len() > 0 {
            spill.take(1000, &mut out).expect("take");
        }
        for q in out.drain(..) {
            assert_eq!(q, queued(next));
            next += 1;
        }
        assert_eq!(next, 20_000);
        // Drained, the file gave its space back.
        assert_eq!(spill.file.metadata().expect("meta").len(), 0);
    }

    #[test]
    fn a_url_longer_than_a_block_is_read_whole() {
        let dir = tempfile::tempdir().expect("dir");
        let mut spill = SpillFile::create(dir.path()).expect("spill");
        let long = format!("http://a.test/{}", "x".repeat(3 * READ_BLOCK));
        let url = Url::parse(&long).expect("url");
        let q = QueuedUrl {
            host: HostKey::of(&url).expect("host"),
            url,
            depth: 1,
            attempt: 0,
            requeues: 0,
        };
        spill.push(&q).expect("push");
        spill.push(&queued(1)).expect("push");
        let mut out = VecDeque::new();
        assert_eq!(spill.take(10, &mut out).expect("take"), 2);
        assert_eq!(out[0], q);
        assert_eq!(out[1], queued(1));
    }
}
