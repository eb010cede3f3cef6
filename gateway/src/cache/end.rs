//! Observing the ledger end for many queries at once. A query must read at least the ledger end
//! as of its start, so it joins the next observation that begins after it arrived, never one
//! already in flight; concurrent queries then share one observation instead of making one each.
//! At most one observation is in flight; the queries that arrive meanwhile form the next batch.
//!
//! An observation is one message each way on a long-lived `ObserveLedgerEnd` stream (the
//! participant reads its ledger end when the message arrives), which costs both sides far less
//! than a `GetLedgerEnd` call. The stream is opened with the credentials of the caller whose
//! batch finds none open; when it fails (token expired, replica stopped serving, a slow answer)
//! it is dropped, that batch observes with a `GetLedgerEnd` call instead, and the next batch
//! opens a new stream.
//!
//! Under `serve`, observations run on one worker thread over a connection of their own made
//! there (`run_on`), so asking and answering wake no other thread; only the waiters served by
//! other workers are woken across. Without workers (tests driving the router) they run where the
//! first query of a batch does, over the shared connection.

use crate::ledger::{CallContext, LedgerClient};
use crate::metrics::Metrics;
use std::sync::{Arc, Mutex};
use tandem_proto::ledger::v2 as pb;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;

type Waiter = (CallContext, oneshot::Sender<Result<i64, tonic::Status>>);

#[derive(Default)]
struct Batch {
    waiting: Vec<Waiter>,
    /// Whether a task is observing (and will serve `waiting` next).
    running: bool,
}

pub struct EndObserver {
    ledger: LedgerClient,
    /// Where observations run when the server has worker threads: one of them, with a
    /// connection of its own made there, so an observation crosses no thread.
    home: std::sync::OnceLock<(tokio::runtime::Handle, LedgerClient)>,
    metrics: Metrics,
    batch: Mutex<Batch>,
    /// The open stream, between observations (only the observing task takes it).
    stream: Mutex<Option<EndStream>>,
}

/// An open `ObserveLedgerEnd` stream: each message sent is answered with the ledger end.
struct EndStream {
    asks: mpsc::Sender<pb::GetLedgerEndRequest>,
    answers: tonic::Streaming<pb::GetLedgerEndResponse>,
}

impl EndStream {
    async fn open(ledger: &LedgerClient, ctx: &CallContext) -> Result<Self, tonic::Status> {
        let (asks, rx) = mpsc::channel(1);
        // The stream outlives the request that opened it: it carries the token, not the id.
        let ctx = CallContext {
            token: ctx.token.clone(),
            request_id: None,
        };
        let answers = ledger
            .state()
            .observe_ledger_end(ledger.stream_request(ReceiverStream::new(rx), &ctx))
            .await?
            .into_inner();
        Ok(Self { asks, answers })
    }

    async fn ask(&mut self) -> Result<i64, tonic::Status> {
        self.asks
            .send(pb::GetLedgerEndRequest {})
            .await
            .map_err(|_| tonic::Status::unavailable("the ledger end stream is closed"))?;
        match self.answers.message().await? {
            Some(answer) => Ok(answer.offset),
            None => Err(tonic::Status::unavailable("the ledger end stream ended")),
        }
    }
}

impl EndObserver {
    pub fn new(ledger: LedgerClient, metrics: Metrics) -> Arc<Self> {
        Arc::new(Self {
            ledger,
            home: std::sync::OnceLock::new(),
            metrics,
            batch: Mutex::new(Batch::default()),
            stream: Mutex::new(None),
        })
    }

    /// The ledger end as observed by a call that started after this one was made.
    pub async fn observe(self: &Arc<Self>, ctx: &CallContext) -> Result<i64, tonic::Status> {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut b = self.batch.lock().unwrap_or_else(|p| p.into_inner());
            b.waiting.push((ctx.clone(), tx));
            !std::mem::replace(&mut b.running, true)
        };
        if start {
            let run = self.clone().run();
            match self.home.get() {
                Some((handle, _)) => handle.spawn(run),
                None => tokio::spawn(run),
            };
        }
        rx.await
            .unwrap_or_else(|_| Err(tonic::Status::unavailable("the gateway is stopping")))
    }

    /// Runs observations on `handle`'s runtime over a connection made there. Set once, before
    /// the first query.
    pub fn run_on(&self, handle: tokio::runtime::Handle) {
        let ledger = {
            let _entered = handle.enter();
            self.ledger.another_connection()
        };
        let _ = self.home.set((handle, ledger));
    }

    fn client(&self) -> &LedgerClient {
        self.home.get().map_or(&self.ledger, |(_, l)| l)
    }

    async fn run(self: Arc<Self>) {
        loop {
            let mut batch = {
                let mut b = self.batch.lock().unwrap_or_else(|p| p.into_inner());
                if b.waiting.is_empty() {
                    b.running = false;
                    return;
                }
                std::mem::take(&mut b.waiting)
            };
            // One caller's credentials observe for the batch: the ledger end is the same for
            // everyone. If that call fails, only that caller gets the error; the rest go
            // first into the next round, under the next caller's credentials.
            let (ctx, first) = batch.remove(0);
            match self.ledger_end(&ctx).await {
                Ok(end) => {
                    let _ = first.send(Ok(end));
                    for (_, tx) in batch {
                        let _ = tx.send(Ok(end));
                    }
                }
                Err(status) => {
                    let _ = first.send(Err(status));
                    let mut b = self.batch.lock().unwrap_or_else(|p| p.into_inner());
                    batch.append(&mut b.waiting);
                    b.waiting = batch;
                }
            }
        }
    }

    /// One observation: on the stream, else (whenever the stream fails) with a `GetLedgerEnd`
    /// call under `ctx`, whose outcome is then that caller's own.
    async fn ledger_end(&self, ctx: &CallContext) -> Result<i64, tonic::Status> {
        match self.on_stream(ctx).await {
            Ok(end) => {
                self.metrics.ledger_end_via_stream.inc();
                return Ok(end);
            }
            Err(status) => {
                tracing::debug!(code = ?status.code(), message = status.message(), "the ledger end stream failed; calling instead");
            }
        }
        self.metrics.ledger_end_via_call.inc();
        self.client().ledger_end(ctx).await
    }

    /// Asks on the open stream, else on a new one opened under `ctx`; the stream is kept only
    /// when it answered in time.
    async fn on_stream(&self, ctx: &CallContext) -> Result<i64, tonic::Status> {
        let open = self.stream.lock().unwrap_or_else(|p| p.into_inner()).take();
        let mut stream = match open {
            Some(stream) => stream,
            None => EndStream::open(self.client(), ctx).await?,
        };
        let end = tokio::time::timeout(self.ledger.call_timeout(), stream.ask())
            .await
            .map_err(|_| tonic::Status::deadline_exceeded("no answer in time"))??;
        *self.stream.lock().unwrap_or_else(|p| p.into_inner()) = Some(stream);
        Ok(end)
    }
}
