//! Call detail records (DESIGN §4): one JSON line per finished call, appended to a file with
//! group commit.
//!
//! Contract:
//! - [`CdrHandle::write`] never blocks the caller: it serializes the record and queues the
//!   line in a bounded queue ([`DEFAULT_QUEUE_CAPACITY`]); when it is full the record is
//!   dropped, counted ([`CdrHandle::dropped`]) and a warning logged (rate-limited).
//! - One writer thread (std, not a tokio task: the file I/O is blocking and tokio's `fs` is not
//!   enabled) takes whatever is queued, appends it, hands it to the kernel, and calls
//!   `sync_data` at most once per `flush_interval`; after each batch it lets records gather
//!   for 20 ms, so a busy server pays one wake-up and one write per batch, not per call. A
//!   record is durable at most `flush_interval` + 20 ms after it was written (group commit:
//!   ~120 ms at risk on power loss, never one fsync per record).
//! - [`CdrWriter::shutdown`] writes everything queued before it, fsyncs and closes: no record
//!   is lost on a clean shutdown.
//! - [`CdrHandle::reopen`] (SIGHUP after log rotation) fsyncs and closes the current file and
//!   opens `path` again: rename the file away, call `reopen`, and records written after the
//!   call go to a new file at `path`. Records written before it stay in the old file (when the
//!   queue is full at that moment, the reopen happens after the writer's current batch, so a
//!   few earlier records may land in the new file instead; none is lost).
//! - An I/O error is logged; the affected records count as dropped and the next record tries
//!   to reopen the file.

use std::borrow::Cow;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

mod json;

/// One finished call.
///
/// The text borrows from the call that ends (`'a`): the record lives only while its line is
/// written, and copying a dozen strings out of the call for it cost more than writing them.
/// Read back (serde), every field is owned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CdrRecord<'a> {
    pub call_id: Cow<'a, str>,
    pub interaction_id: Cow<'a, str>,
    /// `inbound` or `outbound`.
    pub direction: Cow<'a, str>,
    pub from: Cow<'a, str>,
    pub to: Cow<'a, str>,
    /// Unix time in milliseconds.
    pub start_ms: u64,
    pub answer_ms: Option<u64>,
    pub end_ms: u64,
    pub legs: Vec<CdrLeg<'a>>,
    /// Every transfer attempt, in order, including refused and failed ones.
    pub transfers: Cow<'a, [CdrTransfer]>,
    pub release_cause: Cow<'a, str>,
}

/// One leg of a call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CdrLeg<'a> {
    /// `customer`, `agent`, `target` or `ivr`.
    pub role: Cow<'a, str>,
    pub party: Cow<'a, str>,
    pub agent: Option<Cow<'a, str>>,
    pub start_ms: u64,
    pub answer_ms: Option<u64>,
    pub end_ms: u64,
    pub end_reason: Cow<'a, str>,
}

/// One transfer attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CdrTransfer {
    pub transfer_type: String,
    pub target: String,
    /// `succeeded`, `failed:<status>` or `refused:<rule>`.
    pub outcome: String,
    /// When the transferring agent's leg was released (unix ms), if it was.
    pub agent_released_ms: Option<u64>,
    /// Who released the agent leg: e.g. `policy`, `agent`, `customer`, `none`.
    pub released_by: String,
}

/// Records that may wait for the writer before `write` starts dropping.
pub const DEFAULT_QUEUE_CAPACITY: usize = 65536;
/// The file buffer: a batch gathered over 20 ms at thousands of calls per second (~400 bytes
/// each) goes to the kernel in one or two writes, not one per 8 KiB.
const FILE_BUFFER: usize = 64 * 1024;
/// Most records written between two checks of the fsync deadline.
const MAX_BATCH: usize = 4096;

enum Msg {
    /// One serialized record, newline included.
    Line(Vec<u8>),
    Reopen,
    Shutdown,
    /// Test hook: the writer acknowledges, then blocks until released.
    #[cfg(test)]
    Pause(std::sync::mpsc::Sender<()>, Receiver<()>),
}

#[derive(Debug, Default)]
struct Shared {
    dropped: AtomicU64,
    /// Set by `reopen` when the queue is full; the writer checks it after every batch.
    reopen_requested: AtomicBool,
    syncs: AtomicU64,
}

/// Owner of the CDR file and its writer thread.
#[derive(Debug)]
pub struct CdrWriter {
    handle: CdrHandle,
    thread: JoinHandle<()>,
}

/// Cheap, cloneable handle for call actors.
#[derive(Debug, Clone)]
pub struct CdrHandle {
    tx: SyncSender<Msg>,
    shared: Arc<Shared>,
}

impl CdrWriter {
    /// Opens (creating if needed) `path` for appending and starts the writer thread.
    pub async fn open(path: PathBuf, flush_interval: Duration) -> std::io::Result<CdrWriter> {
        Self::open_with_capacity(path, flush_interval, DEFAULT_QUEUE_CAPACITY).await
    }

    /// As [`open`](Self::open), with a queue of `capacity` records (at least 1).
    pub async fn open_with_capacity(
        path: PathBuf,
        flush_interval: Duration,
        capacity: usize,
    ) -> std::io::Result<CdrWriter> {
        let (tx, rx) = sync_channel(capacity.max(1));
        let shared = Arc::new(Shared::default());
        let (opened_tx, opened_rx) = tokio::sync::oneshot::channel();
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("cdr-writer".to_owned())
            .spawn(move || {
                // Open on the writer thread: the runtime never blocks on the file system.
                match open_append(&path) {
                    Ok(file) => {
                        let _ = opened_tx.send(Ok(()));
                        let out = Output::new(path, file, thread_shared);
                        run(rx, out, flush_interval);
                    }
                    Err(e) => {
                        let _ = opened_tx.send(Err(e));
                    }
                }
            })?;
        match opened_rx.await {
            Ok(Ok(())) => Ok(CdrWriter {
                handle: CdrHandle { tx, shared },
                thread,
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(std::io::Error::other("CDR writer thread exited")),
        }
    }

    /// A handle for writing records.
    pub fn handle(&self) -> CdrHandle {
        self.handle.clone()
    }

    /// Writes everything queued so far, fsyncs and closes the file, and ends the thread.
    /// Records written through a handle after this returns are dropped and counted.
    pub async fn shutdown(self) {
        let CdrWriter { handle, thread } = self;
        // Blocking send: a full queue must not lose the shutdown request.
        let joined = tokio::task::spawn_blocking(move || {
            let _ = handle.tx.send(Msg::Shutdown);
            thread.join()
        })
        .await;
        match joined {
            Ok(Ok(())) => {}
            Ok(Err(_)) => tracing::error!("CDR writer thread panicked"),
            Err(e) => tracing::error!(error = %e, "CDR shutdown task failed"),
        }
    }
}

impl CdrHandle {
    /// Queues `rec`; never blocks. A full queue (or a stopped writer) drops it and counts.
    ///
    /// The record is serialized here, by the call that ends, while it borrows the call's text,
    /// and the writer gets one buffer: handing it a dozen small strings to free on its thread
    /// (another allocator arena) cost more than writing them out.
    pub fn write(&self, rec: &CdrRecord<'_>) {
        let mut line = Vec::with_capacity(json::line_capacity(rec));
        json::write_record(&mut line, rec);
        line.push(b'\n');
        match self.tx.try_send(Msg::Line(line)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => self.count_drop("queue full"),
            Err(TrySendError::Disconnected(_)) => self.count_drop("writer stopped"),
        }
    }

    /// Asks the writer to close and reopen the file at the configured path (log rotation).
    pub fn reopen(&self) {
        match self.tx.try_send(Msg::Reopen) {
            Ok(()) => {}
            // Busy writer: it honours the flag after its current batch.
            Err(TrySendError::Full(_)) => {
                self.shared.reopen_requested.store(true, Ordering::Release);
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// Records lost so far: queue full, writer stopped, or an I/O error.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    fn count_drop(&self, why: &'static str) {
        let n = self.shared.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        // Under overload this fires for every record: log the first and then every 1000th.
        if n == 1 || n % 1000 == 0 {
            tracing::warn!(dropped_total = n, reason = why, "CDR record dropped");
        }
    }

    #[cfg(test)]
    fn syncs(&self) -> u64 {
        self.shared.syncs.load(Ordering::Relaxed)
    }

    /// Blocks the writer thread until the returned sender is dropped or signalled.
    #[cfg(test)]
    fn pause(&self) -> std::sync::mpsc::Sender<()> {
        let (ack_tx, ack_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel();
        self.tx.send(Msg::Pause(ack_tx, release_rx)).unwrap();
        ack_rx.recv().unwrap();
        release_tx
    }
}

fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// The open file and the bookkeeping of what reached it.
struct Output {
    path: PathBuf,
    file: Option<BufWriter<File>>,
    /// Handed to the kernel but not yet `sync_data`ed.
    dirty: bool,
    shared: Arc<Shared>,
}

impl Output {
    fn new(path: PathBuf, file: File, shared: Arc<Shared>) -> Self {
        Output {
            path,
            file: Some(BufWriter::with_capacity(FILE_BUFFER, file)),
            dirty: false,
            shared,
        }
    }

    fn lost(&self, n: u64) {
        self.shared.dropped.fetch_add(n, Ordering::Relaxed);
    }

    fn append(&mut self, line: &[u8]) {
        if self.file.is_none() {
            match open_append(&self.path) {
                Ok(f) => self.file = Some(BufWriter::with_capacity(FILE_BUFFER, f)),
                Err(e) => {
                    tracing::error!(error = %e, path = %self.path.display(), "cannot open CDR file");
                    self.lost(1);
                    return;
                }
            }
        }
        if let Some(w) = self.file.as_mut() {
            if let Err(e) = w.write_all(line) {
                tracing::error!(error = %e, path = %self.path.display(), "CDR write failed");
                self.lost(1);
                self.file = None;
                return;
            }
            self.dirty = true;
        }
    }

    /// Hands buffered lines to the kernel.
    fn flush(&mut self) {
        if let Some(w) = self.file.as_mut() {
            if let Err(e) = w.flush() {
                tracing::error!(error = %e, path = %self.path.display(), "CDR flush failed");
                self.file = None;
            }
        }
    }

    /// Flushes and makes everything written durable.
    fn sync(&mut self) {
        self.flush();
        if let Some(w) = self.file.as_mut() {
            if self.dirty {
                if let Err(e) = w.get_ref().sync_data() {
                    tracing::error!(error = %e, path = %self.path.display(), "CDR fsync failed");
                }
                self.shared.syncs.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.dirty = false;
    }

    /// Syncs and closes the current file, then opens the path again.
    fn reopen(&mut self) {
        self.sync();
        self.file = None;
        match open_append(&self.path) {
            Ok(f) => {
                self.file = Some(BufWriter::with_capacity(FILE_BUFFER, f));
                tracing::info!(path = %self.path.display(), "CDR file reopened");
            }
            // The next record retries.
            Err(e) => {
                tracing::error!(error = %e, path = %self.path.display(), "cannot reopen CDR file")
            }
        }
    }
}

/// How long the writer lets records gather after writing a batch.
const GATHER: Duration = Duration::from_millis(20);

/// The writer loop. Uses `std::time::Instant`: this is a plain thread outside the runtime,
/// and only the fsync cadence depends on it.
fn run(rx: Receiver<Msg>, mut out: Output, interval: Duration) {
    let mut last_sync: Option<Instant> = None;
    loop {
        // Idle: wait for work. Dirty: wait at most until the fsync is due.
        let first = if out.dirty {
            let due = last_sync.map_or_else(Instant::now, |t| t + interval);
            match rx.recv_timeout(due.saturating_duration_since(Instant::now())) {
                Ok(m) => Some(m),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            }
        } else {
            match rx.recv() {
                Ok(m) => Some(m),
                Err(_) => break,
            }
        };

        let mut stop = false;
        let mut next = first;
        let mut batch = 0usize;
        while let Some(msg) = next {
            match msg {
                Msg::Line(line) => out.append(&line),
                Msg::Reopen => {
                    out.reopen();
                    last_sync = Some(Instant::now());
                }
                Msg::Shutdown => stop = true,
                #[cfg(test)]
                Msg::Pause(ack, release) => {
                    let _ = ack.send(());
                    let _ = release.recv();
                }
            }
            batch += 1;
            // On shutdown keep draining: everything queued before it is written.
            if batch >= MAX_BATCH && !stop {
                break;
            }
            next = rx.try_recv().ok();
        }
        if out.shared.reopen_requested.swap(false, Ordering::AcqRel) {
            out.reopen();
            last_sync = Some(Instant::now());
        }
        if stop {
            break;
        }
        out.flush();
        if batch < MAX_BATCH {
            // Let records gather before looking again: a sender only pays for a wake-up
            // (a futex syscall) while this thread is blocked in `recv`, and under load one
            // write per gathering period replaces one wake-up and one write per call.
            std::thread::sleep(GATHER.min(interval));
        }
        let due = last_sync.is_none_or(|t| t.elapsed() >= interval);
        if out.dirty && due {
            out.sync();
            last_sync = Some(Instant::now());
        }
    }
    out.sync();
    out.file = None;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh path in the temp dir, removed (with its rotated sibling) on drop.
    struct TempPath(PathBuf);

    impl TempPath {
        fn new(name: &str) -> TempPath {
            let p = std::env::temp_dir().join(format!(
                "handover-cdr-test-{}-{name}.jsonl",
                std::process::id()
            ));
            let _ = std::fs::remove_file(&p);
            TempPath(p)
        }
        fn rotated(&self) -> PathBuf {
            self.0.with_extension("jsonl.1")
        }
    }

    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
            let _ = std::fs::remove_file(self.rotated());
        }
    }

    fn rec(id: usize) -> CdrRecord<'static> {
        CdrRecord {
            call_id: format!("call-{id}").into(),
            interaction_id: format!("int-{id}").into(),
            direction: "inbound".into(),
            from: "sip:+3215551234@carrier".into(),
            to: "sip:8000@handover.local".into(),
            start_ms: 1_700_000_000_000,
            answer_ms: Some(1_700_000_001_000),
            end_ms: 1_700_000_060_000,
            legs: vec![CdrLeg {
                role: "agent".into(),
                party: "sip:1001@handover.local".into(),
                agent: Some("1001".into()),
                start_ms: 1_700_000_000_500,
                answer_ms: Some(1_700_000_001_000),
                end_ms: 1_700_000_030_000,
                end_reason: "transferred".into(),
            }],
            transfers: Cow::Owned(vec![CdrTransfer {
                transfer_type: "release".to_owned(),
                target: "agent:1002".to_owned(),
                outcome: "succeeded".to_owned(),
                agent_released_ms: Some(1_700_000_030_000),
                released_by: "policy".to_owned(),
            }]),
            release_cause: "customer_bye".into(),
        }
    }

    fn read_ids(path: &Path) -> Vec<String> {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            text.is_empty() || text.ends_with('\n'),
            "partial line: {text:?}"
        );
        text.lines()
            .map(|l| {
                serde_json::from_str::<CdrRecord>(l)
                    .unwrap()
                    .call_id
                    .into_owned()
            })
            .collect()
    }

    fn ids(range: std::ops::Range<usize>) -> Vec<String> {
        range.map(|i| format!("call-{i}")).collect()
    }

    /// Polls until `path` holds `n` lines (they reach the kernel within one batch).
    async fn wait_lines(path: &Path, n: usize) {
        for _ in 0..500 {
            if read_ids(path).len() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{} never reached {n} lines", path.display());
    }

    #[tokio::test]
    async fn records_are_json_lines_in_order_and_shutdown_flushes() {
        let tmp = TempPath::new("order");
        // A long interval: only shutdown can have made the tail durable.
        let w = CdrWriter::open(tmp.0.clone(), Duration::from_secs(3600))
            .await
            .unwrap();
        let h = w.handle();
        for i in 0..1000 {
            h.write(&rec(i));
        }
        w.shutdown().await;
        assert_eq!(read_ids(&tmp.0), ids(0..1000));
        let first: CdrRecord = serde_json::from_str(
            std::fs::read_to_string(&tmp.0)
                .unwrap()
                .lines()
                .next()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(first, rec(0));
        assert_eq!(h.dropped(), 0);
        // After shutdown writes are counted, not silently lost.
        h.write(&rec(1000));
        assert_eq!(h.dropped(), 1);
    }

    #[tokio::test]
    async fn appends_to_an_existing_file() {
        let tmp = TempPath::new("append");
        std::fs::write(
            &tmp.0,
            format!("{}\n", serde_json::to_string(&rec(0)).unwrap()),
        )
        .unwrap();
        let w = CdrWriter::open(tmp.0.clone(), Duration::from_millis(10))
            .await
            .unwrap();
        w.handle().write(&rec(1));
        w.shutdown().await;
        assert_eq!(read_ids(&tmp.0), ids(0..2));
    }

    #[tokio::test]
    async fn group_commit_syncs_at_most_once_per_interval() {
        let tmp = TempPath::new("group");
        let interval = Duration::from_millis(400);
        let w = CdrWriter::open(tmp.0.clone(), interval).await.unwrap();
        let h = w.handle();
        for i in 0..200 {
            h.write(&rec(i));
            if i % 20 == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        wait_lines(&tmp.0, 200).await;
        // 200 records in well under one interval: the first batch synced at once, the rest
        // wait for the interval.
        assert!(h.syncs() <= 2, "syncs = {}", h.syncs());
        // The pending sync happens on its own once the interval passes.
        let before = h.syncs();
        tokio::time::sleep(interval * 2).await;
        assert!(
            h.syncs() >= 1 && h.syncs() <= before + 1,
            "syncs = {}",
            h.syncs()
        );
        let settled = h.syncs();
        // Nothing new: no more syncs.
        tokio::time::sleep(interval * 2).await;
        assert_eq!(h.syncs(), settled);
        w.shutdown().await;
    }

    #[tokio::test]
    async fn reopen_after_rename_starts_a_new_file() {
        let tmp = TempPath::new("rotate");
        let w = CdrWriter::open(tmp.0.clone(), Duration::from_millis(50))
            .await
            .unwrap();
        let h = w.handle();
        h.write(&rec(0));
        h.write(&rec(1));
        wait_lines(&tmp.0, 2).await;
        std::fs::rename(&tmp.0, tmp.rotated()).unwrap();
        // Written before reopen: still goes to the open (renamed) file.
        h.write(&rec(2));
        h.reopen();
        h.write(&rec(3));
        h.write(&rec(4));
        w.shutdown().await;
        assert_eq!(read_ids(&tmp.rotated()), ids(0..3));
        assert_eq!(read_ids(&tmp.0), ids(3..5));
    }

    #[tokio::test]
    async fn full_queue_drops_and_counts_without_blocking() {
        let tmp = TempPath::new("drop");
        let w = CdrWriter::open_with_capacity(tmp.0.clone(), Duration::from_millis(10), 4)
            .await
            .unwrap();
        let h = w.handle();
        let release = h.pause();
        let started = Instant::now();
        for i in 0..10 {
            h.write(&rec(i));
        }
        // A reopen on a full queue is remembered, not lost or blocking.
        h.reopen();
        assert!(started.elapsed() < Duration::from_secs(1), "write blocked");
        assert_eq!(h.dropped(), 6);
        drop(release);
        w.shutdown().await;
        assert_eq!(read_ids(&tmp.0), ids(0..4));
        assert_eq!(h.dropped(), 6);
    }

    #[tokio::test]
    async fn open_fails_for_a_bad_path() {
        let bad = std::env::temp_dir()
            .join(format!("handover-no-such-dir-{}", std::process::id()))
            .join("cdr.jsonl");
        assert!(CdrWriter::open(bad, Duration::from_millis(10))
            .await
            .is_err());
    }
}
