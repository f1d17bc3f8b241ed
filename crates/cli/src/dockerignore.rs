//! `.dockerignore` matching and the build-context tarball.
//!
//! Patterns follow docker's rules: `#` comments, paths cleaned and relative to the
//! context root (a leading `/` is dropped), `*`/`?` stay within one path element, `**`
//! spans any number, `!` re-includes, the last matching pattern wins, and a pattern
//! that matches a directory excludes everything below it.

use std::path::{Path, PathBuf};

use globset::{GlobBuilder, GlobMatcher};

/// Errors from reading patterns or building the context.
#[derive(Debug, thiserror::Error)]
pub enum IgnoreError {
    /// A pattern is not a valid glob.
    #[error("invalid .dockerignore pattern {pattern:?}: {source}")]
    Pattern {
        /// the pattern
        pattern: String,
        /// underlying error
        source: globset::Error,
    },
    /// Reading the context failed.
    #[error("cannot read build context {path}: {source}")]
    Io {
        /// path
        path: String,
        /// underlying error
        source: std::io::Error,
    },
}

struct Rule {
    matcher: GlobMatcher,
    negate: bool,
}

/// A parsed `.dockerignore`.
pub struct DockerIgnore {
    rules: Vec<Rule>,
}

fn clean(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    parts.join("/")
}

impl DockerIgnore {
    /// Parses `.dockerignore` text.
    pub fn parse(text: &str) -> Result<Self, IgnoreError> {
        let mut rules = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (negate, pat) = match line.strip_prefix('!') {
                Some(p) => (true, p.trim()),
                None => (false, line),
            };
            let pat = clean(pat);
            if pat.is_empty() {
                continue;
            }
            let glob = GlobBuilder::new(&pat)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|source| IgnoreError::Pattern {
                    pattern: line.to_owned(),
                    source,
                })?;
            rules.push(Rule {
                matcher: glob.compile_matcher(),
                negate,
            });
        }
        Ok(DockerIgnore { rules })
    }

    /// Reads `<dir>/.dockerignore` (no file means nothing is excluded).
    pub fn from_dir(dir: &Path) -> Result<Self, IgnoreError> {
        let path = dir.join(".dockerignore");
        match std::fs::read_to_string(&path) {
            Ok(t) => Self::parse(&t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Ok(DockerIgnore { rules: Vec::new() })
            }
            Err(source) => Err(IgnoreError::Io {
                path: path.display().to_string(),
                source,
            }),
        }
    }

    /// Whether any `!` exception exists (then excluded directories must still be walked).
    pub fn has_exceptions(&self) -> bool {
        self.rules.iter().any(|r| r.negate)
    }

    /// Whether a context-relative path (using `/`) is excluded.
    pub fn excluded(&self, rel: &str) -> bool {
        let rel = clean(rel);
        let mut excluded = false;
        for r in &self.rules {
            let mut hit = r.matcher.is_match(&rel);
            if !hit {
                // a pattern matching a parent directory covers everything below it
                let mut prefix = rel.as_str();
                while let Some((parent, _)) = prefix.rsplit_once('/') {
                    if r.matcher.is_match(parent) {
                        hit = true;
                        break;
                    }
                    prefix = parent;
                }
            }
            if hit {
                excluded = !r.negate;
            }
        }
        excluded
    }
}

/// Tars a build context directory, leaving out what `.dockerignore` excludes. The
/// Dockerfile (`dockerfile`, relative) and `.dockerignore` are always sent.
pub fn context_tar(dir: &Path, dockerfile: &str) -> Result<Vec<u8>, IgnoreError> {
    let ignore = DockerIgnore::from_dir(dir)?;
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    let keep = [clean(dockerfile), ".dockerignore".to_owned()];
    let mut stack: Vec<PathBuf> = vec![PathBuf::new()];
    let io = |p: &Path| {
        let path = p.display().to_string();
        move |source| IgnoreError::Io { path, source }
    };
    while let Some(rel) = stack.pop() {
        let abs = dir.join(&rel);
        let mut entries: Vec<_> = std::fs::read_dir(&abs)
            .map_err(io(&abs))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(io(&abs))?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let rel_child = rel.join(e.file_name());
            let name = rel_child.to_string_lossy().replace('\\', "/");
            let ft = e.file_type().map_err(io(&e.path()))?;
            let excluded = ignore.excluded(&name) && !keep.contains(&name);
            if ft.is_dir() {
                if !excluded {
                    b.append_path_with_name(e.path(), &name)
                        .map_err(io(&e.path()))?;
                }
                if !excluded || ignore.has_exceptions() {
                    stack.push(rel_child);
                }
            } else if !excluded {
                b.append_path_with_name(e.path(), &name)
                    .map_err(io(&e.path()))?;
            }
        }
    }
    b.into_inner().map_err(io(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        let d = DockerIgnore::parse("# comment\n*.log\n/build\n**/tmp\n!keep.log\nsub/*.txt\n")
            .unwrap();
        assert!(d.excluded("a.log"));
        assert!(!d.excluded("keep.log"));
        assert!(!d.excluded("dir/a.log"), "* does not cross directories");
        assert!(d.excluded("build/x/y"));
        assert!(d.excluded("a/b/tmp/z"));
        assert!(d.excluded("sub/a.txt"));
        assert!(!d.excluded("sub/deeper/a.txt"));
        assert!(!d.excluded("src/main.rs"));
    }

    #[test]
    fn context_honours_ignore() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::write(p.join("Dockerfile"), "FROM scratch\n").unwrap();
        std::fs::write(
            p.join(".dockerignore"),
            "secret\nlogs\nDockerfile\n!logs/keep\n",
        )
        .unwrap();
        std::fs::write(p.join("secret"), "x").unwrap();
        std::fs::create_dir(p.join("logs")).unwrap();
        std::fs::write(p.join("logs/a"), "x").unwrap();
        std::fs::write(p.join("logs/keep"), "x").unwrap();
        std::fs::write(p.join("app"), "x").unwrap();
        let data = context_tar(p, "Dockerfile").unwrap();
        let mut names: Vec<String> = tar::Archive::new(&data[..])
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        names.sort();
        assert_eq!(
            names,
            vec![".dockerignore", "Dockerfile", "app", "logs/keep"]
        );
    }
}
