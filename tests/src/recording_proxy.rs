//! A loopback TCP proxy that records both directions of each connection exactly as it reads
//! them, with timestamps on the tracer's clock: real HTTP/2 traffic between a real client and
//! server, captured without the kernel side, for the userspace parsing tests.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{
        TcpListener, TcpStream,
        tcp::{OwnedReadHalf, OwnedWriteHalf},
    },
};
use tracer::stream::{Direction, monotonic_now_ns};

/// One read, as the traced client would have seen it: egress is client-to-server.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub connection: usize,
    pub direction: Direction,
    pub bytes: Vec<u8>,
    pub timestamp_ns: u64,
}

#[derive(Clone, Default)]
pub struct Recording(Arc<Mutex<Vec<Recorded>>>);

impl Recording {
    pub fn take(&self) -> Vec<Recorded> {
        std::mem::take(&mut self.0.lock().expect("recording lock"))
    }
}

/// Starts a proxy to `upstream`; returns its address and what it records.
pub async fn start(upstream: SocketAddr) -> (SocketAddr, Recording) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
    let address = listener.local_addr().expect("proxy address");
    let recording = Recording::default();
    let sink = recording.clone();
    tokio::spawn(async move {
        let mut connection = 0;
        while let Ok((client, _)) = listener.accept().await {
            let server = TcpStream::connect(upstream)
                .await
                .expect("proxy connects upstream");
            client.set_nodelay(true).ok();
            server.set_nodelay(true).ok();
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            tokio::spawn(pump(
                connection,
                Direction::Egress,
                client_read,
                server_write,
                sink.clone(),
            ));
            tokio::spawn(pump(
                connection,
                Direction::Ingress,
                server_read,
                client_write,
                sink.clone(),
            ));
            connection += 1;
        }
    });
    (address, recording)
}

async fn pump(
    connection: usize,
    direction: Direction,
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    sink: Recording,
) {
    let mut buffer = vec![0; 64 * 1024];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        sink.0.lock().expect("recording lock").push(Recorded {
            connection,
            direction,
            bytes: buffer[..read].to_vec(),
            timestamp_ns: monotonic_now_ns(),
        });
        if to.write_all(&buffer[..read]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
