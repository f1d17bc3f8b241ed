//! Terminal and stream plumbing: raw mode, window size, the 8-byte-header
//! multiplexed stream, and pumping a hijacked attach/exec connection.

use std::io::Write;
use std::os::fd::AsFd;

use futures::TryStreamExt;
use http_body_util::BodyStream;
use hyper::body::Incoming;
use hyper::Response;
use nix::sys::termios::{self, SetArg, Termios};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::client::Hijacked;

/// Errors from stream plumbing.
#[derive(Debug, thiserror::Error)]
pub enum StdioError {
    /// Reading or writing a stream failed.
    #[error("{context}: {source}")]
    Io {
        /// what was being done
        context: &'static str,
        /// underlying error
        source: std::io::Error,
    },
    /// The terminal could not be switched to raw mode.
    #[error("cannot set terminal mode: {0}")]
    Term(nix::Error),
}

type Result<T> = std::result::Result<T, StdioError>;

fn io(context: &'static str) -> impl FnOnce(std::io::Error) -> StdioError {
    move |source| StdioError::Io { context, source }
}

/// Puts stdin in raw mode while alive; restores the previous mode on drop.
pub struct RawTerminal {
    saved: Option<Termios>,
}

impl RawTerminal {
    /// Switches stdin to raw mode if it is a terminal; otherwise does nothing.
    pub fn enable() -> Result<Self> {
        let stdin = std::io::stdin();
        if !is_tty(0) {
            return Ok(RawTerminal { saved: None });
        }
        let saved = termios::tcgetattr(stdin.as_fd()).map_err(StdioError::Term)?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).map_err(StdioError::Term)?;
        Ok(RawTerminal { saved: Some(saved) })
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, saved);
        }
    }
}

/// Whether a file descriptor is a terminal.
pub fn is_tty(fd: i32) -> bool {
    // SAFETY: isatty only inspects the descriptor number.
    unsafe { libc::isatty(fd) == 1 }
}

/// The terminal size of stdout as (rows, columns), if it is a terminal.
pub fn window_size() -> Option<(u16, u16)> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes a winsize into the pointed-to struct, which lives on our stack.
    let rc = unsafe { libc::ioctl(1, libc::TIOCGWINSZ, &mut ws as *mut libc::winsize) };
    (rc == 0 && ws.ws_row > 0).then_some((ws.ws_row, ws.ws_col))
}

/// Copies a docker multiplexed stream (8-byte headers) to stdout/stderr until EOF.
pub async fn demux<R: AsyncRead + Unpin>(mut r: R) -> Result<()> {
    let mut header = [0u8; 8];
    loop {
        match r.read_exact(&mut header).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(io("reading stream")(e)),
        }
        let len = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
        let mut buf = vec![0u8; len];
        r.read_exact(&mut buf).await.map_err(io("reading stream"))?;
        if header[0] == 2 {
            let mut e = std::io::stderr().lock();
            e.write_all(&buf)
                .and_then(|_| e.flush())
                .map_err(io("writing stderr"))?;
        } else {
            let mut o = std::io::stdout().lock();
            o.write_all(&buf)
                .and_then(|_| o.flush())
                .map_err(io("writing stdout"))?;
        }
    }
}

/// Copies a raw stream to stdout until EOF.
pub async fn copy_raw<R: AsyncRead + Unpin>(mut r: R) -> Result<()> {
    let mut out = tokio::io::stdout();
    tokio::io::copy(&mut r, &mut out)
        .await
        .map_err(io("writing stdout"))?;
    out.flush().await.map_err(io("writing stdout"))
}

/// Turns a response body into a byte reader.
pub fn body_reader(resp: Response<Incoming>) -> impl AsyncRead + Unpin {
    let stream = BodyStream::new(resp.into_body())
        .map_err(std::io::Error::other)
        .try_filter_map(|f| async move { Ok(f.into_data().ok()) });
    tokio_util::io::StreamReader::new(Box::pin(stream))
}

/// How a [`pump`] ended.
#[derive(Debug, PartialEq, Eq)]
pub enum PumpEnd {
    /// The output stream reached EOF (the process ended or the daemon closed it).
    Eof,
    /// The user typed the detach key sequence.
    Detached,
}

/// Parses docker's `--detach-keys` syntax (`ctrl-p,ctrl-q`, `a,ctrl-@`) into bytes.
pub fn parse_detach_keys(spec: &str) -> Option<Vec<u8>> {
    spec.split(',')
        .map(|k| {
            let k = k.trim();
            match k.strip_prefix("ctrl-") {
                Some(c) if c.len() == 1 => {
                    let b = c.as_bytes()[0].to_ascii_lowercase();
                    match b {
                        b'a'..=b'z' => Some(b - b'a' + 1),
                        b'@' => Some(0),
                        b'[' => Some(27),
                        b'\\' => Some(28),
                        b']' => Some(29),
                        b'^' => Some(30),
                        b'_' => Some(31),
                        _ => None,
                    }
                }
                None if k.len() == 1 => Some(k.as_bytes()[0]),
                _ => None,
            }
        })
        .collect()
}

/// Scans input for a detach sequence, holding back a partial match until it completes
/// or breaks. Returns the bytes to forward and whether the sequence completed.
pub struct DetachScanner {
    keys: Vec<u8>,
    matched: usize,
}

impl DetachScanner {
    /// A scanner for `keys` (an empty sequence never matches).
    pub fn new(keys: Vec<u8>) -> Self {
        DetachScanner { keys, matched: 0 }
    }

    /// Feeds input; returns (bytes to forward, detached).
    pub fn feed(&mut self, data: &[u8]) -> (Vec<u8>, bool) {
        let mut out = Vec::with_capacity(data.len());
        if self.keys.is_empty() {
            out.extend_from_slice(data);
            return (out, false);
        }
        for &b in data {
            if b == self.keys[self.matched] {
                self.matched += 1;
                if self.matched == self.keys.len() {
                    return (out, true);
                }
            } else {
                out.extend_from_slice(&self.keys[..self.matched]);
                self.matched = 0;
                if b == self.keys[0] {
                    self.matched = 1;
                } else {
                    out.push(b);
                }
            }
        }
        (out, false)
    }
}

/// Pumps a hijacked connection: output to stdout/stderr (raw if `tty`, else demultiplexed),
/// and, if `stdin`, the local stdin to the connection (half-closing it at EOF). With
/// `detach_keys`, typing that sequence ends the pump with [`PumpEnd::Detached`].
/// Otherwise returns when the output side reaches EOF.
pub async fn pump(
    h: Hijacked,
    tty: bool,
    stdin: bool,
    detach_keys: Option<Vec<u8>>,
) -> Result<PumpEnd> {
    let (rd, mut wr) = h.stream.into_split();
    let (detach_tx, mut detach_rx) = tokio::sync::oneshot::channel::<()>();
    let input = if stdin {
        Some(tokio::spawn(async move {
            let mut inp = tokio::io::stdin();
            let mut scanner = DetachScanner::new(detach_keys.unwrap_or_default());
            let mut buf = vec![0u8; 8192];
            loop {
                let n = match inp.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let (fwd, detached) = scanner.feed(&buf[..n]);
                if !fwd.is_empty() && wr.write_all(&fwd).await.is_err() {
                    break;
                }
                if detached {
                    let _ = detach_tx.send(());
                    return;
                }
            }
            let _ = wr.shutdown().await;
            // keep the sender alive so EOF on stdin is not taken for a detach
            std::future::pending::<()>().await;
        }))
    } else {
        drop(wr);
        None
    };
    let reader = std::io::Cursor::new(h.leftover).chain(rd);
    let output = async move {
        if tty {
            copy_raw(reader).await
        } else {
            demux(reader).await
        }
    };
    let res = tokio::select! {
        r = output => r.map(|_| PumpEnd::Eof),
        Ok(()) = &mut detach_rx => Ok(PumpEnd::Detached),
    };
    if let Some(t) = input {
        t.abort();
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_keys() {
        assert_eq!(parse_detach_keys("ctrl-p,ctrl-q"), Some(vec![16, 17]));
        assert_eq!(parse_detach_keys("a,ctrl-@"), Some(vec![b'a', 0]));
        assert_eq!(parse_detach_keys("ctrl-pp"), None);
        let mut s = DetachScanner::new(vec![16, 17]);
        assert_eq!(s.feed(b"ab\x10"), (b"ab".to_vec(), false));
        assert_eq!(s.feed(b"x"), (b"\x10x".to_vec(), false));
        assert_eq!(s.feed(b"\x10\x10"), (b"\x10".to_vec(), false));
        assert_eq!(s.feed(b"\x11rest"), (Vec::new(), true));
    }

    #[tokio::test]
    async fn demux_reads_frames_to_eof() {
        let mut data = vec![1u8, 0, 0, 0, 0, 0, 0, 3];
        data.extend_from_slice(b"hi\n");
        data.extend_from_slice(&[2, 0, 0, 0, 0, 0, 0, 0]);
        demux(&data[..]).await.unwrap();
        let truncated = [1u8, 0, 0, 0, 0, 0, 0, 9, b'x'];
        assert!(demux(&truncated[..]).await.is_err());
    }
}
