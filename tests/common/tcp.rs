//! A raw TCP server on 127.0.0.1 with an ephemeral port, for servers the
//! HTTP test site cannot play (TLS with a bad certificate, a server that
//! never answers, a body that drips): each connection goes to a handler, on
//! a runtime of the server's own thread, and is counted.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A running server: its address and how many connections it accepted.
pub struct TcpServer {
    pub addr: SocketAddr,
    connections: Arc<AtomicUsize>,
}

impl TcpServer {
    /// Starts a server that hands every accepted connection to `handle`.
    pub fn start<F, Fut>(handle: F) -> TcpServer
    where
        F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                while let Ok((tcp, _)) = listener.accept().await {
                    counted.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(handle(tcp));
                }
            });
        });
        TcpServer {
            addr: rx.recv().unwrap(),
            connections,
        }
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}
