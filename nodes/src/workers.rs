//! The threads that carry client connections for the lb and the gateway. Each worker is one
//! thread with a single-threaded tokio runtime; a connection, its streams and the upstream
//! connections they open all stay on the worker it was given (round-robin at accept), as in
//! HAProxy or pingora's no-steal runtime. On a small machine this saves the cross-thread
//! wake-ups and cache misses of a work-stealing runtime, which cost about 15% of the lb's CPU
//! per gRPC call. Accepting and background work (health checks, reloads, admin endpoints)
//! stay on the caller's runtime.
//!
//! A connection accepted on the caller's runtime is registered with that runtime's reactor, so
//! it is handed over as a `std::net::TcpStream` ([`Workers::accept`]) and registered again on
//! its worker ([`adopt`]).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

/// The pause after an accept that failed for want of resources (descriptors, memory), so an
/// accept loop does not spin while they are short.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The most workers a config may ask for.
pub const MAX_WORKERS: usize = 256;

pub struct Workers {
    handles: Vec<Handle>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    next: AtomicUsize,
    /// Ends the workers' runtimes, dropping whatever still runs on them.
    end: CancellationToken,
}

impl Workers {
    /// Starts `count` workers (0: one per CPU), their threads named `<name>-<i>`. Each
    /// runtime is built on its own thread, so none is ever dropped inside the caller's runtime.
    pub fn start(name: &str, count: usize) -> std::io::Result<Self> {
        let count = if count == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            count
        };
        // Dropped on an early return, this ends the workers already started.
        let mut workers = Self {
            handles: Vec::with_capacity(count),
            threads: Mutex::new(Vec::with_capacity(count)),
            next: AtomicUsize::new(0),
            end: CancellationToken::new(),
        };
        for i in 0..count {
            let (tx, rx) = std::sync::mpsc::channel();
            let end = workers.end.clone();
            let thread = std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || {
                    match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(runtime) => {
                            let _ = tx.send(Ok(runtime.handle().clone()));
                            runtime.block_on(end.cancelled());
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e));
                        }
                    }
                })?;
            workers
                .threads
                .get_mut()
                .unwrap_or_else(|p| p.into_inner())
                .push(thread);
            // Waits only for the runtime to be built, once, at start.
            let handle = rx
                .recv()
                .map_err(|_| std::io::Error::other("a worker thread ended at start"))??;
            workers.handles.push(handle);
        }
        Ok(workers)
    }

    pub fn count(&self) -> usize {
        self.handles.len()
    }

    /// The worker for the next connection, by index.
    fn next(&self) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed) % self.handles.len()
    }

    pub fn handle(&self, index: usize) -> &Handle {
        &self.handles[index]
    }

    /// The next connection on `listener` (named `what` in logs), detached from the caller's
    /// runtime, and the worker it goes to. A peer that left before the accept is skipped; any
    /// other failure is logged and retried after a pause. Cancel-safe, for a `select!` loop.
    pub async fn accept(&self, listener: &TcpListener, what: &str) -> (usize, std::net::TcpStream) {
        loop {
            match listener.accept().await.and_then(|(tcp, _)| tcp.into_std()) {
                Ok(tcp) => return (self.next(), tcp),
                Err(e) if is_connection_error(&e) => {}
                Err(e) => {
                    tracing::warn!(listener = %what, error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            }
        }
    }

    /// Ends every worker and waits for its thread. Call once nothing needs them any more.
    pub async fn stop(&self) {
        self.end.cancel();
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
    }
}

/// Registers a connection from [`Workers::accept`] on the current (worker) runtime, with
/// Nagle's algorithm off: responses are written whole, Nagle would only hold back their tail.
pub fn adopt(tcp: std::net::TcpStream) -> std::io::Result<TcpStream> {
    let tcp = TcpStream::from_std(tcp)?;
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}

/// Errors of one connection (the peer reset or left), not of the listener.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.end.cancel();
    }
}
