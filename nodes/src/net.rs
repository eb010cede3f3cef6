//! Socket helpers shared by the node's servers.

use tokio::net::{TcpListener, TcpStream};
use tokio_stream::{Stream, StreamExt};

/// The connections accepted on `listener`, with Nagle's algorithm off. gRPC sends small frames
/// and waits for answers; with Nagle on, each exchange can stall on the peer's delayed ACK
/// (tens of milliseconds). Servers given a pre-bound listener must set this themselves.
pub fn incoming_nodelay(listener: TcpListener) -> impl Stream<Item = std::io::Result<TcpStream>> {
    tokio_stream::wrappers::TcpListenerStream::new(listener).map(|accepted| {
        let stream = accepted?;
        stream.set_nodelay(true)?;
        Ok(stream)
    })
}
