//! A load spreader in front of several `errand serve` nodes, as the simplest TCP load
//! balancer would be: each connection goes to the next node in turn, skipping a node
//! that refuses connections. A paused node still accepts them (its kernel does), so
//! clients see it as a request that never gets an answer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub struct Spreader {
    pub url: String,
    task: JoinHandle<()>,
}

impl Spreader {
    pub async fn start(nodes: Vec<SocketAddr>) -> Spreader {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let next = Arc::new(AtomicUsize::new(0));
        let nodes = Arc::new(nodes);
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let (nodes, next) = (nodes.clone(), next.clone());
                tokio::spawn(async move {
                    let first = next.fetch_add(1, Ordering::Relaxed);
                    for i in 0..nodes.len() {
                        let node = nodes[(first + i) % nodes.len()];
                        let connect = TcpStream::connect(node);
                        if let Ok(Ok(server)) =
                            tokio::time::timeout(Duration::from_secs(1), connect).await
                        {
                            let (mut client, mut server) = (client, server);
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                            return;
                        }
                    }
                });
            }
        });
        Spreader { url, task }
    }
}

impl Drop for Spreader {
    fn drop(&mut self) {
        self.task.abort();
    }
}
