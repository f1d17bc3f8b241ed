//! `.dockerignore` patterns with Docker's semantics: Go `filepath.Match` syntax plus `**`,
//! `!` exceptions (the last matching pattern wins), a leading `/` is ignored, `#` comments,
//! and a pattern that matches a directory also matches everything under it.

use regex::Regex;

/// Errors of `.dockerignore` handling.
#[derive(Debug, thiserror::Error)]
pub enum IgnoreError {
    /// A pattern that cannot be compiled.
    #[error("invalid .dockerignore pattern {pattern:?}: {reason}")]
    BadPattern {
        /// The pattern as written.
        pattern: String,
        /// Why it is invalid.
        reason: String,
    },
}

#[derive(Debug, Clone)]
struct Pattern {
    regex: Regex,
    exclusion: bool,
}

/// A compiled `.dockerignore` file.
#[derive(Debug, Clone, Default)]
pub struct IgnoreMatcher {
    patterns: Vec<Pattern>,
}

/// Lexically cleans a slash path like Go's `path.Clean` (without a leading `/`).
pub(crate) fn clean(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !p.starts_with('/') {
                    parts.push("..");
                }
            }
            c => parts.push(c),
        }
    }
    if parts.is_empty() {
        ".".to_string()
    } else {
        parts.join("/")
    }
}

pub(crate) fn compile(pattern: &str) -> Result<Regex, IgnoreError> {
    let bad = |reason: &str| IgnoreError::BadPattern {
        pattern: pattern.to_string(),
        reason: reason.to_string(),
    };
    let chars: Vec<char> = pattern.chars().collect();
    let mut re = String::from("^");
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '*' if chars.get(i + 1) == Some(&'*') => {
                i += 1;
                if chars.get(i + 1) == Some(&'/') {
                    // `**/` matches zero or more directories.
                    i += 1;
                    re.push_str("(.*/)?");
                } else {
                    re.push_str(".*");
                }
            }
            '*' => re.push_str("[^/]*"),
            '?' => re.push_str("[^/]"),
            '[' => {
                let mut j = i + 1;
                let mut class = String::from("[");
                if chars.get(j) == Some(&'^') || chars.get(j) == Some(&'!') {
                    class.push('^');
                    j += 1;
                }
                let mut closed = false;
                while j < chars.len() {
                    match chars[j] {
                        ']' => {
                            closed = true;
                            break;
                        }
                        '\\' => {
                            j += 1;
                            let n = chars
                                .get(j)
                                .ok_or_else(|| bad("escape at end of character class"))?;
                            class.push_str(&regex::escape(&n.to_string()));
                        }
                        '-' => class.push('-'),
                        c => class.push_str(&regex::escape(&c.to_string())),
                    }
                    j += 1;
                }
                if !closed {
                    return Err(bad("unterminated character class"));
                }
                class.push(']');
                re.push_str(&class);
                i = j;
            }
            '\\' => {
                i += 1;
                let n = chars
                    .get(i)
                    .ok_or_else(|| bad("escape at end of pattern"))?;
                re.push_str(&regex::escape(&n.to_string()));
            }
            c => re.push_str(&regex::escape(&c.to_string())),
        }
        i += 1;
    }
    re.push('$');
    Regex::new(&re).map_err(|e| bad(&e.to_string()))
}

impl IgnoreMatcher {
    /// Parses the text of a `.dockerignore` file.
    pub fn parse(text: &str) -> Result<Self, IgnoreError> {
        let mut patterns = Vec::new();
        for line in text.lines() {
            let mut p = line.trim();
            if p.is_empty() || p.starts_with('#') {
                continue;
            }
            let exclusion = p.starts_with('!');
            if exclusion {
                p = p[1..].trim();
                if p.is_empty() {
                    return Err(IgnoreError::BadPattern {
                        pattern: line.to_string(),
                        reason: "illegal exclusion pattern: \"!\"".into(),
                    });
                }
            }
            let cleaned = clean(p);
            let cleaned = cleaned.strip_prefix('/').unwrap_or(&cleaned).to_string();
            patterns.push(Pattern {
                regex: compile(&cleaned)?,
                exclusion,
            });
        }
        Ok(IgnoreMatcher { patterns })
    }

    /// True when there are no patterns.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether a context-relative slash path is excluded (it, or one of its parent
    /// directories, matches the last applicable pattern).
    pub fn matches(&self, path: &str) -> bool {
        let path = clean(path);
        let parents: Vec<&str> = path.split('/').collect();
        let mut matched = false;
        for p in &self.patterns {
            if p.exclusion != matched {
                continue;
            }
            let mut m = p.regex.is_match(&path);
            if !m {
                for i in 1..parents.len() {
                    if p.regex.is_match(&parents[..i].join("/")) {
                        m = true;
                        break;
                    }
                }
            }
            if m {
                matched = !p.exclusion;
            }
        }
        matched
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_semantics() {
        let m = IgnoreMatcher::parse("# comment\n*.md\n!README.md\n/build\n**/*.tmp\nnode_modules\n!node_modules/keep\ndocs/**/x\n a?c \n").unwrap();
        assert!(m.matches("CHANGES.md"));
        assert!(!m.matches("README.md"));
        assert!(!m.matches("sub/CHANGES.md"), "* does not cross /");
        assert!(m.matches("build"));
        assert!(
            m.matches("build/out/bin"),
            "a matching directory excludes its contents"
        );
        assert!(m.matches("x.tmp"));
        assert!(m.matches("a/b/c.tmp"));
        assert!(m.matches("node_modules/a/index.js"));
        assert!(!m.matches("node_modules/keep"));
        assert!(m.matches("docs/x"));
        assert!(m.matches("docs/a/b/x"));
        assert!(m.matches("abc"));
        assert!(!m.matches("src/main.rs"));
        assert!(!m.matches("ac"));
    }

    #[test]
    fn classes_and_escapes() {
        let m = IgnoreMatcher::parse("[a-c]x\n[!d]y\nq\\*\n").unwrap();
        assert!(m.matches("bx"));
        assert!(!m.matches("dx"));
        assert!(m.matches("ey"));
        assert!(!m.matches("dy"));
        assert!(m.matches("q*"));
        assert!(!m.matches("qq"));
        assert!(IgnoreMatcher::parse("[abc").is_err());
        assert!(IgnoreMatcher::parse("!").is_err());
    }

    #[test]
    fn clean_paths() {
        assert_eq!(clean("./a//b/../c/"), "a/c");
        assert_eq!(clean("/../a"), "a");
        assert_eq!(clean(""), ".");
    }
}
