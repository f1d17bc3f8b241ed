//! Shell-like word processing for the instructions Docker expands at build time: quotes,
//! the escape character, and `$V`, `${V}`, `${V:-x}`, `${V-x}`, `${V:+x}`, `${V+x}`,
//! `${V:?msg}`, `${V?msg}`.

/// Errors of word expansion.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ExpandError {
    /// A quote or `${` was never closed.
    #[error("unexpected end of statement while looking for matching {0} in {1:?}")]
    Unterminated(&'static str, String),
    /// `${V:?msg}` with V unset (or empty).
    #[error("{name}: {message}")]
    Required {
        /// The variable.
        name: String,
        /// The message given after `?`.
        message: String,
    },
    /// A `${...}` form this builder does not know.
    #[error("unsupported modifier {modifier:?} in {word:?}")]
    BadModifier {
        /// The modifier found.
        modifier: String,
        /// The word it is in.
        word: String,
    },
    /// `${}` or a name that is not a variable name.
    #[error("bad substitution in {0:?}")]
    BadSubstitution(String),
}

/// Expands one word. `lookup` returns `None` for an unset variable and `Some("")` for an empty
/// one. Quotes are removed; the result is not split.
pub fn expand_word(
    word: &str,
    escape: char,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ExpandError> {
    let words = process(word, escape, lookup, false)?;
    Ok(words.into_iter().next().unwrap_or_default())
}

/// Expands a string and splits it into words on unquoted whitespace.
pub fn expand_words(
    text: &str,
    escape: char,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<String>, ExpandError> {
    process(text, escape, lookup, true)
}

/// Expands `$V`/`${V}` forms only, leaving quotes and escapes untouched (used for heredoc
/// bodies whose delimiter was not quoted).
pub fn expand_vars_only(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ExpandError> {
    let chars: Vec<char> = text.chars().collect();
    let mut p = Proc {
        chars: &chars,
        pos: 0,
        escape: '\u{0}',
        lookup,
        src: text,
    };
    let mut out = String::new();
    while let Some(c) = p.peek() {
        if c == '$' {
            out.push_str(&p.dollar()?);
        } else {
            out.push(c);
            p.pos += 1;
        }
    }
    Ok(out)
}

struct Proc<'a> {
    chars: &'a [char],
    pos: usize,
    escape: char,
    lookup: &'a dyn Fn(&str) -> Option<String>,
    src: &'a str,
}

impl Proc<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }
    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        self.pos += 1;
        c
    }

    /// Handles `$...` at the current position; returns the expansion.
    fn dollar(&mut self) -> Result<String, ExpandError> {
        self.pos += 1; // '$'
        match self.peek() {
            Some('{') => {
                self.pos += 1;
                self.braced()
            }
            Some(c) if c.is_ascii_digit() => {
                self.pos += 1;
                Ok((self.lookup)(&c.to_string()).unwrap_or_default())
            }
            Some(c) if c.is_ascii_alphanumeric() || c == '_' => {
                let name = self.name();
                Ok((self.lookup)(&name).unwrap_or_default())
            }
            _ => Ok("$".to_string()),
        }
    }

    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || c == '_' {
                name.push(c);
                self.pos += 1;
            } else {
                break;
            }
        }
        name
    }

    fn braced(&mut self) -> Result<String, ExpandError> {
        let name = self.name();
        if name.is_empty() {
            return Err(ExpandError::BadSubstitution(self.src.to_string()));
        }
        let value = (self.lookup)(&name);
        let modifier = match self.next() {
            Some('}') => return Ok(value.unwrap_or_default()),
            Some(':') => match self.next() {
                Some(m @ ('-' | '+' | '?')) => format!(":{m}"),
                other => {
                    return Err(ExpandError::BadModifier {
                        modifier: format!(":{}", other.map(String::from).unwrap_or_default()),
                        word: self.src.to_string(),
                    })
                }
            },
            Some(m @ ('-' | '+' | '?')) => m.to_string(),
            Some(other) => {
                return Err(ExpandError::BadModifier {
                    modifier: other.to_string(),
                    word: self.src.to_string(),
                })
            }
            None => return Err(ExpandError::Unterminated("'}'", self.src.to_string())),
        };
        // The word after the modifier may itself hold expansions and quotes.
        let mut word = String::new();
        loop {
            match self.peek() {
                None => return Err(ExpandError::Unterminated("'}'", self.src.to_string())),
                Some('}') => {
                    self.pos += 1;
                    break;
                }
                Some('$') => word.push_str(&self.dollar()?),
                Some('\'') => {
                    self.pos += 1;
                    word.push_str(&self.single()?);
                }
                Some('"') => {
                    self.pos += 1;
                    word.push_str(&self.double()?);
                }
                Some(c) if c == self.escape => {
                    self.pos += 1;
                    if let Some(n) = self.next() {
                        word.push(n);
                    }
                }
                Some(c) => {
                    word.push(c);
                    self.pos += 1;
                }
            }
        }
        let set = value.is_some();
        let nonempty = value.as_deref().is_some_and(|v| !v.is_empty());
        Ok(match modifier.as_str() {
            ":-" => {
                if nonempty {
                    value.unwrap_or_default()
                } else {
                    word
                }
            }
            "-" => {
                if set {
                    value.unwrap_or_default()
                } else {
                    word
                }
            }
            ":+" => {
                if nonempty {
                    word
                } else {
                    String::new()
                }
            }
            "+" => {
                if set {
                    word
                } else {
                    String::new()
                }
            }
            ":?" | "?" => {
                let ok = if modifier == ":?" { nonempty } else { set };
                if !ok {
                    let message = if word.is_empty() {
                        "parameter not set".to_string()
                    } else {
                        word
                    };
                    return Err(ExpandError::Required { name, message });
                }
                value.unwrap_or_default()
            }
            _ => String::new(),
        })
    }

    fn single(&mut self) -> Result<String, ExpandError> {
        let mut s = String::new();
        loop {
            match self.next() {
                None => {
                    return Err(ExpandError::Unterminated(
                        "single-quote",
                        self.src.to_string(),
                    ))
                }
                Some('\'') => return Ok(s),
                Some(c) => s.push(c),
            }
        }
    }

    fn double(&mut self) -> Result<String, ExpandError> {
        let mut s = String::new();
        loop {
            match self.peek() {
                None => {
                    return Err(ExpandError::Unterminated(
                        "double-quote",
                        self.src.to_string(),
                    ))
                }
                Some('"') => {
                    self.pos += 1;
                    return Ok(s);
                }
                Some('$') => s.push_str(&self.dollar()?),
                Some(c) if c == self.escape => {
                    self.pos += 1;
                    match self.next() {
                        None => {
                            return Err(ExpandError::Unterminated(
                                "double-quote",
                                self.src.to_string(),
                            ))
                        }
                        Some(n) if n == '"' || n == '$' || n == self.escape => s.push(n),
                        Some(n) => {
                            s.push(c);
                            s.push(n);
                        }
                    }
                }
                Some(c) => {
                    s.push(c);
                    self.pos += 1;
                }
            }
        }
    }
}

fn process(
    text: &str,
    escape: char,
    lookup: &dyn Fn(&str) -> Option<String>,
    split: bool,
) -> Result<Vec<String>, ExpandError> {
    let chars: Vec<char> = text.chars().collect();
    let mut p = Proc {
        chars: &chars,
        pos: 0,
        escape,
        lookup,
        src: text,
    };
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    while let Some(c) = p.peek() {
        match c {
            c if split && c.is_whitespace() => {
                p.pos += 1;
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\'' => {
                p.pos += 1;
                cur.push_str(&p.single()?);
                in_word = true;
            }
            '"' => {
                p.pos += 1;
                cur.push_str(&p.double()?);
                in_word = true;
            }
            '$' => {
                let v = p.dollar()?;
                if split {
                    // Unquoted expansions are split on whitespace like a shell does.
                    let mut parts = v.split(char::is_whitespace).peekable();
                    while let Some(part) = parts.next() {
                        cur.push_str(part);
                        if !part.is_empty() {
                            in_word = true;
                        }
                        if parts.peek().is_some() && in_word {
                            words.push(std::mem::take(&mut cur));
                            in_word = false;
                        }
                    }
                } else {
                    cur.push_str(&v);
                    in_word = true;
                }
            }
            c if c == escape => {
                p.pos += 1;
                match p.next() {
                    Some(n) => cur.push(n),
                    None => cur.push(c),
                }
                in_word = true;
            }
            c => {
                p.pos += 1;
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word || !split {
        words.push(cur);
    }
    Ok(words)
}
