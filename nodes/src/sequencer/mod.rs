//! The sequencer (design.md §5.1): total-order multicast among synchronizer members, run
//! active-active by several processes over one shared database.
//!
//! - `writer`: claims a writer index, assigns partitioned microsecond timestamps, writes batches
//!   fenced by its session, raises its watermark while idle, marks lagging peers offline.
//! - `head`: tracks how far readers may deliver (the lowest watermark of the online writers),
//!   moved by the watermarks that commits announce: in-process, and on Postgres by
//!   `LISTEN/NOTIFY` payloads; on SQLite other processes' commits are seen by a short poll.
//! - `journal`: what is known of the commits above the fan-out's position without reading them.
//! - `fanout`: reads each run of new events once and hands it to every subscription here, and
//!   skips the read where the journal knows every event a subscription here would receive.
//! - `api`: the gRPC sequencer and admin services; `members` the registry of member keys;
//!   `client` what members use to talk to it.

mod api;
pub mod client;
mod fanout;
mod head;
mod journal;
mod members;
mod writer;

pub use api::{SequencerAdmin, SequencerApi};
pub use head::Head;
pub(crate) use members::decode_broadcast;

use crate::config::SequencingConfig;
use crate::identity::{canonical, KeyPair, MemberId};
use crate::store::Store;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Microseconds since the Unix epoch by this host's clock.
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The bytes a sender signs for `Send`.
pub fn send_signing_bytes(
    sender: &str,
    message_id: &str,
    recipients: &[String],
    payload: &[u8],
    max_sequencing_time_us: i64,
) -> Vec<u8> {
    let mst = max_sequencing_time_us.to_be_bytes();
    let mut fields: Vec<&[u8]> = vec![sender.as_bytes(), message_id.as_bytes()];
    fields.extend(recipients.iter().map(|r| r.as_bytes()));
    fields.push(payload);
    fields.push(&mst);
    canonical("tandem.send.v1", &fields)
}

/// The bytes a member signs for `Subscribe`.
pub fn subscribe_signing_bytes(member: &str, from_us: i64, request_time_us: i64) -> Vec<u8> {
    canonical(
        "tandem.subscribe.v1",
        &[
            member.as_bytes(),
            &from_us.to_be_bytes(),
            &request_time_us.to_be_bytes(),
        ],
    )
}

/// The bytes a member signs for `Acknowledge`.
pub fn acknowledge_signing_bytes(member: &str, ts: i64) -> Vec<u8> {
    canonical(
        "tandem.acknowledge.v1",
        &[member.as_bytes(), &ts.to_be_bytes()],
    )
}

/// A running sequencer: its writer, head tracker and shared state.
#[derive(Clone)]
pub struct Sequencer {
    pub(crate) store: Store,
    pub(crate) config: SequencingConfig,
    pub(crate) submissions: mpsc::Sender<writer::Submission>,
    fanout: fanout::Fanout,
    pub(crate) members: Arc<members::Members>,
    pub(crate) writer: watch::Receiver<writer::WriterStatus>,
    /// The sequencer's own identity, which the topology manager admits at bootstrap.
    pub(crate) identity: Arc<(MemberId, KeyPair)>,
    pub(crate) shutdown: CancellationToken,
}

/// What a sequencer is started with besides its store.
pub struct SequencerSettings {
    pub sequencing: SequencingConfig,
    /// Admissions take effect this long after they are sequenced.
    pub topology_change_delay: std::time::Duration,
    pub identity: (MemberId, KeyPair),
}

impl Sequencer {
    /// Starts the writer (preferring index `preferred`) and the head tracker. `health` receives
    /// `Ok` while the writer is online, and why not otherwise.
    pub fn start(
        store: Store,
        settings: SequencerSettings,
        preferred: u32,
        health: watch::Sender<Result<(), String>>,
        shutdown: CancellationToken,
    ) -> (Sequencer, Vec<JoinHandle<()>>) {
        let SequencerSettings {
            sequencing: config,
            topology_change_delay,
            identity,
        } = settings;
        let (signals_tx, signals_rx) = mpsc::unbounded_channel();
        let (head_tx, head_rx) = watch::channel(Head::default());
        let (submissions_tx, submissions_rx) = mpsc::channel(4096);
        let (status_tx, status_rx) = watch::channel(writer::WriterStatus::default());
        let journal = Arc::new(std::sync::Mutex::new(journal::Journal::default()));
        let tracker = tokio::spawn(head::run(
            store.clone(),
            head_tx,
            journal.clone(),
            signals_tx.clone(),
            signals_rx,
            shutdown.clone(),
        ));
        let w = writer::Writer::new(
            store.clone(),
            config.clone(),
            preferred,
            head_rx.clone(),
            status_tx,
            signals_tx,
        );
        let writer_task = tokio::spawn(w.run(submissions_rx, shutdown.clone()));
        let (fanout, fanout_task) =
            fanout::Fanout::start(store.clone(), head_rx.clone(), journal, shutdown.clone());
        let mut status = status_rx.clone();
        let follow = shutdown.clone();
        let health_task = tokio::spawn(async move {
            loop {
                let s = status.borrow_and_update().clone();
                let _ = health.send(match s.index {
                    Some(_) => Ok(()),
                    None => Err(s
                        .problem
                        .unwrap_or_else(|| "sequencer writer is not online".into())),
                });
                tokio::select! {
                    () = follow.cancelled() => break,
                    changed = status.changed() => if changed.is_err() { break },
                }
            }
        });
        let sequencer = Sequencer {
            members: Arc::new(members::Members::new(
                store.clone(),
                head_rx.clone(),
                topology_change_delay,
            )),
            identity: Arc::new(identity),
            store,
            config,
            submissions: submissions_tx,
            fanout,
            writer: status_rx,
            shutdown,
        };
        (
            sequencer,
            vec![tracker, writer_task, fanout_task, health_task],
        )
    }

    /// This sequencer's writer index while online.
    pub fn writer_index(&self) -> Option<u32> {
        self.writer.borrow().index
    }
}
