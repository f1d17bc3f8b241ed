//! A one-request-per-connection HTTP proxy in front of a real registry that
//! breaks the first blob download halfway and answers 503 to the first
//! manifest request, to exercise retries and range resume.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// The proxy; stopped and joined on drop.
pub struct FlakyProxy {
    pub addr: String,
    /// Request heads seen (request line plus a Range header if any).
    pub seen: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for FlakyProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl FlakyProxy {
    pub fn start(upstream: &str) -> FlakyProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (stop2, seen2, up) = (stop.clone(), seen.clone(), upstream.to_string());
        let thread = std::thread::spawn(move || {
            let mut broke_blob = false;
            let mut failed_manifest = false;
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                handle(conn, &up, &seen2, &mut broke_blob, &mut failed_manifest);
            }
        });
        FlakyProxy {
            addr,
            seen,
            stop,
            thread: Some(thread),
        }
    }
}

fn handle(
    mut client: TcpStream,
    upstream: &str,
    seen: &Mutex<Vec<String>>,
    broke_blob: &mut bool,
    failed_manifest: &mut bool,
) {
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut head = Vec::new();
    let mut request_line = String::new();
    let mut range = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        if request_line.is_empty() {
            request_line = line.trim().to_string();
        }
        if line.to_ascii_lowercase().starts_with("range:") {
            range = line.trim().to_string();
        }
        if line == "\r\n" {
            break;
        }
        if !line.to_ascii_lowercase().starts_with("connection:") {
            head.push(line);
        }
    }
    seen.lock()
        .unwrap()
        .push(format!("{request_line} {range}").trim().to_string());
    if request_line.contains("/manifests/") && !*failed_manifest {
        *failed_manifest = true;
        let _ = client.write_all(
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
        return;
    }
    let mut up = TcpStream::connect(upstream).unwrap();
    for l in &head {
        up.write_all(l.as_bytes()).unwrap();
    }
    up.write_all(b"Connection: close\r\n\r\n").unwrap();
    let mut response = Vec::new();
    let _ = up.read_to_end(&mut response);
    let cut = request_line.starts_with("GET")
        && request_line.contains("/blobs/sha256:")
        && !*broke_blob
        && response.len() > 4096;
    if cut {
        *broke_blob = true;
        // Headers plus part of the body, then a dropped connection.
        let _ = client.write_all(&response[..response.len() / 2]);
        return;
    }
    let _ = client.write_all(&response);
}
