//! Splits Dockerfile text into parser directives and logical lines: comments are dropped,
//! line continuations joined, and heredoc bodies attached to the line that opens them.

use super::ParseError;

/// Parser directives found at the top of a Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directives {
    /// `# syntax=...` (recorded, not acted on).
    pub syntax: Option<String>,
    /// `# escape=` character: `\` (default) or `` ` ``.
    pub escape: char,
    /// `# check=...` (recorded, not acted on).
    pub check: Option<String>,
}

impl Default for Directives {
    fn default() -> Self {
        Directives {
            syntax: None,
            escape: '\\',
            check: None,
        }
    }
}

/// A heredoc body attached to an instruction (`<<EOF ... EOF`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The delimiter word, without quotes and `-`.
    pub name: String,
    /// The body, every line ending in `\n` (leading tabs stripped for `<<-`).
    pub content: String,
    /// False when the delimiter was quoted: the body is then taken literally.
    pub expand: bool,
}

/// One logical instruction line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogicalLine {
    /// 1-based number of the physical line where the instruction starts.
    pub line: usize,
    /// The joined text of the instruction (continuations removed, heredoc bodies excluded).
    pub text: String,
    /// Heredoc bodies opened on this line, in order.
    pub heredocs: Vec<Heredoc>,
}

/// Reads the parser directives at the top of the file; returns them and the index of the first
/// line that is not a directive.
fn directives(lines: &[&str]) -> Result<(Directives, usize), ParseError> {
    let mut d = Directives::default();
    let mut seen: Vec<String> = Vec::new();
    for (i, raw) in lines.iter().enumerate() {
        let t = raw.trim();
        let Some(body) = t.strip_prefix('#') else {
            return Ok((d, i));
        };
        let Some((k, v)) = body.split_once('=') else {
            return Ok((d, i));
        };
        let key = k.trim().to_ascii_lowercase();
        let value = v.trim().to_string();
        if !matches!(key.as_str(), "syntax" | "escape" | "check")
            || key.contains(char::is_whitespace)
        {
            return Ok((d, i));
        }
        if seen.contains(&key) {
            return Err(ParseError::Syntax {
                line: i + 1,
                message: format!("only one {key} parser directive can be used"),
            });
        }
        seen.push(key.clone());
        match key.as_str() {
            "syntax" => d.syntax = Some(value),
            "check" => d.check = Some(value),
            _ => {
                d.escape = match value.as_str() {
                    "\\" => '\\',
                    "`" => '`',
                    _ => {
                        return Err(ParseError::Syntax {
                            line: i + 1,
                            message: format!(
                                "invalid escape token '{value}' does not match ` or \\"
                            ),
                        })
                    }
                }
            }
        }
    }
    Ok((d, lines.len()))
}

/// Heredoc markers (`<<EOF`, `<<-EOF`, `<<"EOF"`, `<<'EOF'`) in an instruction line.
/// Returns (name, strip_tabs, expand) for each.
pub(crate) fn heredoc_markers(text: &str) -> Vec<(String, bool, bool)> {
    let b: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i + 1 < b.len() {
        if b[i] == '<'
            && b[i + 1] == '<'
            && (i == 0 || b[i - 1] != '<')
            && b.get(i + 2) != Some(&'<')
        {
            let mut j = i + 2;
            let strip = b.get(j) == Some(&'-');
            if strip {
                j += 1;
            }
            let quote = match b.get(j) {
                Some(&q) if q == '"' || q == '\'' => {
                    j += 1;
                    Some(q)
                }
                _ => None,
            };
            let start = j;
            while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == '_') {
                j += 1;
            }
            let name: String = b[start..j].iter().collect();
            let closed = match quote {
                Some(q) if b.get(j) == Some(&q) => {
                    j += 1;
                    true
                }
                Some(_) => false,
                None => true,
            };
            if !name.is_empty() && closed {
                out.push((name, strip, quote.is_none()));
            }
            i = j.max(i + 2);
        } else {
            i += 1;
        }
    }
    out
}

fn instruction_allows_heredoc(text: &str) -> bool {
    let word = text
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_ascii_uppercase();
    matches!(word.as_str(), "RUN" | "COPY" | "ADD")
}

/// Strips a trailing escape character (plus trailing blanks); returns the line without it and
/// whether it continued.
fn continuation(line: &str, escape: char) -> (&str, bool) {
    let t = line.trim_end_matches([' ', '\t', '\r']);
    match t.strip_suffix(escape) {
        Some(rest) => (rest, true),
        None => (line.trim_end_matches('\r'), false),
    }
}

/// Splits a whole Dockerfile into its directives and logical lines.
pub fn split(src: &str) -> Result<(Directives, Vec<LogicalLine>), ParseError> {
    let src = src.strip_prefix('\u{feff}').unwrap_or(src);
    let lines: Vec<&str> = src.split('\n').collect();
    let (dirs, mut i) = directives(&lines)?;
    let mut out = Vec::new();
    while i < lines.len() {
        let raw = lines[i];
        let t = raw.trim();
        if t.is_empty() || t.starts_with('#') {
            i += 1;
            continue;
        }
        let start = i + 1;
        let (first, mut cont) = continuation(raw, dirs.escape);
        let mut text = first.to_string();
        i += 1;
        while cont && i < lines.len() {
            let next = lines[i];
            i += 1;
            let nt = next.trim();
            if nt.starts_with('#') || nt.is_empty() {
                continue;
            }
            let (part, c) = continuation(next, dirs.escape);
            text.push_str(part);
            cont = c;
        }
        let text = text.trim().to_string();
        let mut heredocs = Vec::new();
        if instruction_allows_heredoc(&text) {
            for (name, strip, expand) in heredoc_markers(&text) {
                let mut content = String::new();
                let mut closed = false;
                while i < lines.len() {
                    let l = lines[i].trim_end_matches('\r');
                    i += 1;
                    let cmp = if strip { l.trim_start_matches('\t') } else { l };
                    if cmp == name {
                        closed = true;
                        break;
                    }
                    content.push_str(cmp);
                    content.push('\n');
                }
                if !closed {
                    return Err(ParseError::Syntax {
                        line: start,
                        message: format!("unterminated heredoc {name}"),
                    });
                }
                heredocs.push(Heredoc {
                    name,
                    content,
                    expand,
                });
            }
        }
        out.push(LogicalLine {
            line: start,
            text,
            heredocs,
        });
    }
    Ok((dirs, out))
}
