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

/// Pumps a hijacked connection: output to stdout/stderr (raw if `tty`, else demultiplexed),
/// and, if `stdin`, the local stdin to the connection (half-closing it at EOF).
/// Returns when the output side reaches EOF.
pub async fn pump(h: Hijacked, tty: bool, stdin: bool) -> Result<()> {
    let (rd, mut wr) = h.stream.into_split();
    let input = if stdin {
        Some(tokio::spawn(async move {
            let mut inp = tokio::io::stdin();
            let _ = tokio::io::copy(&mut inp, &mut wr).await;
            let _ = wr.shutdown().await;
        }))
    } else {
        drop(wr);
        None
    };
    let reader = std::io::Cursor::new(h.leftover).chain(rd);
    let res = if tty {
        copy_raw(reader).await
    } else {
        demux(reader).await
    };
    if let Some(t) = input {
        t.abort();
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

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
