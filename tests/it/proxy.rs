//! A TCP proxy on loopback that stands between sheaf and a real test server and breaks the
//! connection on demand: reset new connections, answer HTTP 503, go away altogether (every
//! live connection cut, new ones dropped) after a number of requests, or hang (connections
//! accepted and kept, nothing answered).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

/// A fault the proxy injects into the next new connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Read the request, then close the connection without an answer.
    Reset,
    /// Read the request, then answer `503 Service Unavailable` and close.
    Http503,
}

#[derive(Default)]
struct Shared {
    target: Option<SocketAddr>,
    /// Faults still to inject, one per new connection.
    pending: Mutex<Vec<Fault>>,
    injected: AtomicUsize,
    /// Client-to-server writes forwarded (one per request or RPC, near enough).
    requests: AtomicUsize,
    /// Go down once this many requests were forwarded (0: never).
    down_after: AtomicUsize,
    down: AtomicBool,
    /// Nothing is forwarded either way; connections stay open.
    hung: AtomicBool,
    live: Mutex<Vec<TcpStream>>,
}

/// A running proxy; it stops accepting when dropped.
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Proxy {
    /// Starts forwarding a new loopback port to `target` (`host:port` or a URL's authority).
    pub fn to(target: &str) -> Proxy {
        let target: SocketAddr = target.parse().unwrap_or_else(|e| panic!("{target}: {e}"));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            target: Some(target),
            ..Default::default()
        });
        let accepting = Arc::clone(&shared);
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if Arc::strong_count(&accepting) == 1 {
                    return;
                }
                let shared = Arc::clone(&accepting);
                thread::spawn(move || shared.serve(client));
            }
        });
        Proxy { addr, shared }
    }

    /// The proxy's own address, `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Injects `faults` into the next new connections, in order.
    pub fn inject(&self, faults: &[Fault]) {
        let mut pending = self.shared.pending.lock().unwrap();
        pending.extend(faults.iter().rev());
    }

    /// Faults injected so far.
    pub fn injected(&self) -> usize {
        self.shared.injected.load(Ordering::SeqCst)
    }

    /// Requests forwarded so far.
    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Goes down once `n` more requests have been forwarded.
    pub fn go_down_after(&self, n: usize) {
        let limit = self.requests() + n;
        self.shared.down_after.store(limit, Ordering::SeqCst);
    }

    /// Cuts every live connection now and drops new ones until [`Proxy::come_back`].
    pub fn go_down(&self) {
        self.shared.go_down();
    }

    /// Stops answering without closing anything: connections are accepted and kept, and
    /// nothing goes through either way (a server that hangs rather than refuses).
    pub fn hang(&self) {
        self.shared.hung.store(true, Ordering::SeqCst);
    }

    /// Forwards again (connections a hang held are cut, so their clients reconnect).
    pub fn come_back(&self) {
        self.shared.down_after.store(0, Ordering::SeqCst);
        self.shared.down.store(false, Ordering::SeqCst);
        if self.shared.hung.swap(false, Ordering::SeqCst) {
            for stream in self.shared.live.lock().unwrap().drain(..) {
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.go_down();
        // Wake the accept loop so it sees it is alone and returns.
        let _ = TcpStream::connect(self.addr);
    }
}

impl Shared {
    fn serve(self: Arc<Self>, mut client: TcpStream) {
        if self.down.load(Ordering::SeqCst) {
            let _ = client.shutdown(Shutdown::Both);
            return;
        }
        if let Some(fault) = self.pending.lock().unwrap().pop() {
            self.injected.fetch_add(1, Ordering::SeqCst);
            let mut request = [0u8; 16 << 10];
            let _ = client.read(&mut request);
            if fault == Fault::Http503 {
                let _ = client.write_all(
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
            let _ = client.shutdown(Shutdown::Both);
            return;
        }
        if self.hung.load(Ordering::SeqCst) {
            self.live.lock().unwrap().push(client);
            return;
        }
        let Ok(server) = TcpStream::connect(self.target.unwrap()) else {
            return;
        };
        {
            let mut live = self.live.lock().unwrap();
            live.push(client.try_clone().unwrap());
            live.push(server.try_clone().unwrap());
        }
        let (client_read, server_write) =
            (client.try_clone().unwrap(), server.try_clone().unwrap());
        let upstream = Arc::clone(&self);
        thread::spawn(move || upstream.pump(client_read, server_write, true));
        self.pump(server, client, false);
    }

    /// Copies one direction until either side closes; counts client writes as requests.
    fn pump(&self, mut from: TcpStream, mut to: TcpStream, from_client: bool) {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if self.hung.load(Ordering::SeqCst) {
                continue;
            }
            if self.down.load(Ordering::SeqCst) || to.write_all(&buf[..n]).is_err() {
                break;
            }
            if from_client {
                let seen = self.requests.fetch_add(1, Ordering::SeqCst) + 1;
                let limit = self.down_after.load(Ordering::SeqCst);
                if limit != 0 && seen >= limit {
                    self.go_down();
                }
            }
        }
        let _ = from.shutdown(Shutdown::Both);
        let _ = to.shutdown(Shutdown::Both);
    }

    fn go_down(&self) {
        self.down.store(true, Ordering::SeqCst);
        for stream in self.live.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}
