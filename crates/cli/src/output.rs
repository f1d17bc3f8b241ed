//! Output helpers: docker-style aligned tables, human sizes and durations, truncation,
//! and rendering rows through `--format` templates.

use serde_json::Value;

use crate::template::{Template, TemplateError};

/// Aligns tab-separated lines like Go's `tabwriter` as docker configures it
/// (minimum cell width 10, padding 3, the last cell of a line left unpadded).
pub fn align(lines: &[String]) -> String {
    let rows: Vec<Vec<&str>> = lines.iter().map(|l| l.split('\t').collect()).collect();
    let mut widths: Vec<usize> = Vec::new();
    for row in &rows {
        for (i, cell) in row.iter().enumerate().take(row.len().saturating_sub(1)) {
            let w = (width(cell) + 3).max(10);
            if widths.len() <= i {
                widths.push(w);
            } else if widths[i] < w {
                widths[i] = w;
            }
        }
    }
    let mut out = String::new();
    for row in &rows {
        let last = row.len().saturating_sub(1);
        for (i, cell) in row.iter().enumerate() {
            out.push_str(cell);
            if i < last {
                out.push_str(&" ".repeat(widths[i].saturating_sub(width(cell))));
            }
        }
        out.push('\n');
    }
    out
}

fn width(s: &str) -> usize {
    s.chars().count()
}

/// Shortens `s` to `max` characters, ending with `…` when cut (docker's `Ellipsis`).
pub fn ellipsis(s: &str, max: usize) -> String {
    if width(s) <= max {
        return s.to_owned();
    }
    if max == 0 {
        return String::new();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}

/// The 12-hex-digit short form of an id, without any `sha256:` prefix.
pub fn short_id(id: &str) -> String {
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    id.chars().take(12).collect()
}

/// Decimal human size with 3 significant digits, as `docker images` shows ("4.26MB").
pub fn human_size(size: f64) -> String {
    human_size_prec(size, 3)
}

/// Decimal human size with the given significant digits (go-units `HumanSizeWithPrecision`).
pub fn human_size_prec(mut size: f64, prec: usize) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut i = 0;
    while size >= 1000.0 && i < UNITS.len() - 1 {
        size /= 1000.0;
        i += 1;
    }
    format!("{}{}", fmt_g(size, prec), UNITS[i])
}

/// Binary human size ("1.5GiB"), as `docker info` shows memory.
pub fn bytes_size(mut size: f64) -> String {
    const UNITS: [&str; 9] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"];
    let mut i = 0;
    while size >= 1024.0 && i < UNITS.len() - 1 {
        size /= 1024.0;
        i += 1;
    }
    format!("{}{}", fmt_g(size, 4), UNITS[i])
}

/// Formats like Go's `%.{prec}g` for values below 1e4 (trailing zeros dropped).
fn fmt_g(v: f64, prec: usize) -> String {
    if v == 0.0 {
        return "0".to_owned();
    }
    let digits_before = (v.abs().log10().floor() as i64 + 1).max(1) as usize;
    let decimals = prec.saturating_sub(digits_before);
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

/// Human duration like go-units `HumanDuration` ("About a minute", "3 hours").
pub fn human_duration(secs: i64) -> String {
    let s = secs.max(0);
    let minutes = s / 60;
    let hours = (s as f64 / 3600.0 + 0.5) as i64;
    if s < 1 {
        "Less than a second".to_owned()
    } else if s == 1 {
        "1 second".to_owned()
    } else if s < 60 {
        format!("{s} seconds")
    } else if minutes == 1 {
        "About a minute".to_owned()
    } else if minutes < 60 {
        format!("{minutes} minutes")
    } else if hours == 1 {
        "About an hour".to_owned()
    } else if hours < 48 {
        format!("{hours} hours")
    } else if hours < 24 * 7 * 2 {
        format!("{} days", hours / 24)
    } else if hours < 24 * 30 * 2 {
        format!("{} weeks", hours / 24 / 7)
    } else if hours < 24 * 365 * 2 {
        format!("{} months", hours / 24 / 30)
    } else {
        format!("{} years", s / 3600 / 24 / 365)
    }
}

/// "N units ago" for a unix timestamp relative to now.
pub fn ago(unix: i64) -> String {
    let now = chrono::Utc::now().timestamp();
    format!("{} ago", human_duration(now - unix))
}

/// Formats a unix timestamp like docker's `CreatedAt` ("2024-01-02 15:04:05 +0000 UTC").
pub fn created_at(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S +0000 UTC").to_string())
        .unwrap_or_default()
}

/// Renders rows through a user `--format`, or through `default` (a `table ...` format),
/// returning the text to print. `header` names a field's column.
pub fn render_rows(
    format: &str,
    rows: &[Value],
    header: &dyn Fn(&str) -> String,
) -> Result<String, TemplateError> {
    let (is_table, body) = match format.trim_start().strip_prefix("table") {
        Some(rest) => (true, rest.trim()),
        None => (false, format),
    };
    let body = body.replace("\\t", "\t").replace("\\n", "\n");
    let tpl = Template::parse(&body)?;
    if !is_table {
        let mut out = String::new();
        for r in rows {
            out.push_str(&tpl.render(r)?);
            out.push('\n');
        }
        return Ok(out);
    }
    let mut lines = vec![tpl.render_header(header)];
    for r in rows {
        lines.push(tpl.render(r)?);
    }
    let joined: Vec<String> = lines
        .iter()
        .flat_map(|l| l.split('\n').map(str::to_owned).collect::<Vec<_>>())
        .collect();
    Ok(align(&joined))
}

/// Asks `question` on stdout and reads a y/N answer from stdin (docker's prune prompt).
pub fn confirm(warning: &str) -> bool {
    use std::io::Write;
    print!("{warning}\nAre you sure you want to continue? [y/N] ");
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    if std::io::stdin().read_line(&mut line).is_err() {
        return false;
    }
    matches!(line.trim().to_lowercase().as_str(), "y" | "yes")
}

/// Default header for a field: its name upper-cased with words split ("CreatedAt" → "CREATED AT").
pub fn default_header(field: &str) -> String {
    let mut out = String::new();
    let chars: Vec<char> = field.chars().collect();
    for (i, c) in chars.iter().enumerate() {
        if i > 0
            && c.is_uppercase()
            && (chars[i - 1].is_lowercase() || chars.get(i + 1).is_some_and(|n| n.is_lowercase()))
        {
            out.push(' ');
        }
        out.extend(c.to_uppercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn align_like_tabwriter() {
        let out = align(&[
            "CONTAINER ID\tIMAGE\tNAMES".to_owned(),
            "abc\tbusybox:latest\tx".to_owned(),
        ]);
        assert_eq!(
            out,
            "CONTAINER ID   IMAGE            NAMES\nabc            busybox:latest   x\n"
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(human_size(4_264_446.0), "4.26MB");
        assert_eq!(human_size(1_000_000.0), "1MB");
        assert_eq!(human_size(999.0), "999B");
        assert_eq!(human_size(12_500.0), "12.5kB");
        assert_eq!(bytes_size(2.0 * 1024.0 * 1024.0 * 1024.0), "2GiB");
    }

    #[test]
    fn durations() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(5), "5 seconds");
        assert_eq!(human_duration(65), "About a minute");
        assert_eq!(human_duration(3 * 60), "3 minutes");
        assert_eq!(human_duration(3600), "About an hour");
        assert_eq!(human_duration(5 * 3600), "5 hours");
        assert_eq!(human_duration(3 * 86400), "3 days");
        assert_eq!(human_duration(20 * 86400), "2 weeks");
    }

    #[test]
    fn truncation() {
        assert_eq!(
            ellipsis("\"sh -c 'sleep 1000; echo'\"", 20),
            "\"sh -c 'sleep 1000;…"
        );
        assert_eq!(short_id("sha256:0123456789abcdef"), "0123456789ab");
    }

    #[test]
    fn headers() {
        assert_eq!(default_header("CreatedAt"), "CREATED AT");
        assert_eq!(default_header("ID"), "ID");
        assert_eq!(default_header("Names"), "NAMES");
    }

    #[test]
    fn table_format_renders_header_and_rows() {
        let rows = vec![serde_json::json!({"ID": "abc", "Names": "web"})];
        let out = render_rows("table {{.ID}}\\t{{.Names}}", &rows, &|f| default_header(f)).unwrap();
        assert_eq!(out, "ID        NAMES\nabc       web\n");
        let out = render_rows("{{.Names}}", &rows, &|f| default_header(f)).unwrap();
        assert_eq!(out, "web\n");
    }
}
