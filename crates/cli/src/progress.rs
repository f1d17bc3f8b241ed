//! Rendering docker's JSON message stream (pull/push/build/load progress): per-layer
//! lines redrawn in place on a terminal, plain lines otherwise.

use std::io::Write;

use serde_json::Value;

/// Renders progress messages to a writer (stdout or stderr).
pub struct Progress<W: Write> {
    out: W,
    tty: bool,
    ids: Vec<String>,
    /// the first error message seen in the stream
    pub error: Option<String>,
    /// the `aux` payloads seen (e.g. the built image ID)
    pub aux: Vec<Value>,
}

/// Text docker shows for a progress detail when the daemon sent no `progress` string.
pub fn progress_bar(current: f64, total: f64) -> String {
    if total <= 0.0 {
        return String::new();
    }
    let width = 50usize;
    let pct = (current / total).clamp(0.0, 1.0);
    let filled = (pct * width as f64) as usize;
    let bar = if filled >= width {
        "=".repeat(width)
    } else {
        format!("{}>{}", "=".repeat(filled), " ".repeat(width - filled - 1))
    };
    format!(
        "[{bar}]  {}/{}",
        crate::output::human_size_prec(current, 4),
        crate::output::human_size_prec(total, 4)
    )
}

impl<W: Write> Progress<W> {
    /// A renderer; `tty` selects in-place redraws.
    pub fn new(out: W, tty: bool) -> Self {
        Progress {
            out,
            tty,
            ids: Vec::new(),
            error: None,
            aux: Vec::new(),
        }
    }

    fn line(m: &Value) -> String {
        let id = m["id"].as_str().unwrap_or("");
        let status = m["status"].as_str().unwrap_or("");
        let mut s = if id.is_empty() {
            status.to_owned()
        } else {
            format!("{id}: {status}")
        };
        let prog = match m["progress"].as_str() {
            Some(p) if !p.is_empty() => p.to_owned(),
            _ => {
                let d = &m["progressDetail"];
                progress_bar(
                    d["current"].as_f64().unwrap_or(0.0),
                    d["total"].as_f64().unwrap_or(0.0),
                )
            }
        };
        if !prog.is_empty() {
            s.push(' ');
            s.push_str(&prog);
        }
        s
    }

    /// Shows one message; write errors to the terminal are ignored.
    pub fn show(&mut self, m: &Value) {
        if let Some(e) = m.get("error").and_then(Value::as_str) {
            if self.error.is_none() {
                self.error = Some(e.to_owned());
            }
            return;
        }
        if let Some(aux) = m.get("aux") {
            self.aux.push(aux.clone());
        }
        if let Some(s) = m.get("stream").and_then(Value::as_str) {
            let _ = self.out.write_all(s.as_bytes());
            let _ = self.out.flush();
            return;
        }
        if m.get("status").is_none() {
            return;
        }
        let id = m["id"].as_str().unwrap_or("").to_owned();
        let has_progress = m
            .get("progressDetail")
            .is_some_and(|d| d.get("current").is_some())
            || m["progress"].as_str().is_some_and(|p| !p.is_empty());
        if !self.tty {
            if !has_progress {
                let _ = writeln!(self.out, "{}", Self::line(m));
            }
            return;
        }
        let text = Self::line(m);
        if id.is_empty() {
            let _ = writeln!(self.out, "{text}");
            self.ids.clear();
        } else if let Some(pos) = self.ids.iter().position(|i| *i == id) {
            let up = self.ids.len() - pos;
            let _ = write!(self.out, "\x1b[{up}A\r\x1b[2K{text}\r\x1b[{up}B");
        } else {
            self.ids.push(id);
            let _ = writeln!(self.out, "{text}");
        }
        let _ = self.out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn plain_output_skips_progress_lines() {
        let mut p = Progress::new(Vec::new(), false);
        p.show(&json!({"status": "Pulling from library/busybox", "id": "latest"}));
        p.show(&json!({"status": "Downloading", "id": "abc", "progressDetail": {"current": 1, "total": 2}}));
        p.show(&json!({"status": "Pull complete", "id": "abc", "progressDetail": {}}));
        p.show(&json!({"error": "boom", "errorDetail": {"message": "boom"}}));
        assert_eq!(
            String::from_utf8(p.out).unwrap(),
            "latest: Pulling from library/busybox\nabc: Pull complete\n"
        );
        assert_eq!(p.error.as_deref(), Some("boom"));
    }

    #[test]
    fn tty_output_redraws_known_ids() {
        let mut p = Progress::new(Vec::new(), true);
        p.show(&json!({"status": "Waiting", "id": "a"}));
        p.show(&json!({"status": "Waiting", "id": "b"}));
        p.show(&json!({"status": "Done", "id": "a"}));
        let s = String::from_utf8(p.out).unwrap();
        assert!(s.ends_with("\x1b[2A\r\x1b[2Ka: Done\r\x1b[2B"));
    }

    #[test]
    fn bar() {
        assert!(progress_bar(50.0, 100.0).starts_with("[=========================>"));
        assert_eq!(progress_bar(1.0, 0.0), "");
    }
}
