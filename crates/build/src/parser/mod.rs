//! Dockerfile parser: pure text in, typed instructions out, no I/O.
//!
//! Values of instructions Docker expands at build time (FROM, COPY, ADD, ENV, ARG, LABEL,
//! EXPOSE, USER, WORKDIR, VOLUME, STOPSIGNAL and flag values) are kept raw, quotes included;
//! the builder expands them with [`expand::expand_word`] once the stage's variables are known.
//! RUN, CMD, ENTRYPOINT, SHELL and HEALTHCHECK commands are never expanded by the builder.

pub mod expand;
mod instructions;
pub mod lexer;
mod words;

#[cfg(test)]
mod fuzz_tests;
#[cfg(test)]
mod tests;

pub use lexer::{Directives, Heredoc};
pub use words::duration_nanos;

/// Errors of the parser; each names the 1-based line of the offending instruction.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    /// Malformed instruction or file.
    #[error("dockerfile parse error on line {line}: {message}")]
    Syntax {
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// An instruction name Docker does not know.
    #[error("dockerfile parse error on line {line}: unknown instruction: {name}")]
    UnknownInstruction {
        /// 1-based line.
        line: usize,
        /// The word as written.
        name: String,
    },
}

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// Parser directives (`# syntax`, `# escape`).
    pub directives: Directives,
    /// `ARG`s declared before the first `FROM` (usable in `FROM` lines only, unless
    /// re-declared inside a stage).
    pub global_args: Vec<ArgDecl>,
    /// The stages in file order; there is at least one.
    pub stages: Vec<Stage>,
}

/// One build stage: a `FROM` and the instructions up to the next `FROM`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// Position of the stage in the file (0-based); `COPY --from=N` refers to it.
    pub index: usize,
    /// The `FROM` instruction that opens the stage.
    pub from: FromInstr,
    /// Source line of the `FROM`.
    pub line: usize,
    /// The original `FROM` text.
    pub original: String,
    /// The stage's instructions, excluding its `FROM`.
    pub instructions: Vec<Line>,
}

/// An instruction with its source position and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// 1-based line where the instruction starts.
    pub line: usize,
    /// The instruction as written (continuations joined), e.g. `RUN make`.
    pub original: String,
    /// The parsed instruction.
    pub instruction: Instruction,
}

/// A declared build argument (`ARG name[=default]`); the default is raw (unexpanded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgDecl {
    /// The argument name.
    pub name: String,
    /// Its default value, raw.
    pub default: Option<String>,
}

/// `FROM [--platform=p] image [AS name]`, raw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FromInstr {
    /// Image reference, stage name or `scratch`, raw.
    pub image: String,
    /// `--platform` value, raw.
    pub platform: Option<String>,
    /// The stage name given by `AS`, lowercased like Docker does.
    pub alias: Option<String>,
}

/// Exec (JSON) or shell form of a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandLine {
    /// `["prog", "arg"]`
    Exec(Vec<String>),
    /// `prog arg`: run with the stage's SHELL.
    Shell(String),
}

/// Sharing mode of a cache mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sharing {
    #[default]
    /// Concurrent steps use the directory together.
    Shared,
    /// Each concurrent step gets its own directory.
    Private,
    /// Concurrent steps wait for each other.
    Locked,
}

/// `RUN --mount=...` specifications (raw values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountSpec {
    /// `type=cache,target=..[,id=..][,sharing=..][,ro]`; id defaults to the target.
    Cache {
        /// Cache identity (default: the target).
        id: Option<String>,
        /// Mount point.
        target: String,
        /// Concurrency mode.
        sharing: Sharing,
        /// Mounted read-only.
        readonly: bool,
    },
    /// `type=bind,target=..[,source=..][,from=..][,rw]`; the source defaults to the root of
    /// the context (or of `from`).
    Bind {
        /// Path in the context or in `from`.
        source: Option<String>,
        /// Mount point.
        target: String,
        /// Stage or image providing the source.
        from: Option<String>,
        /// Writable (writes are discarded).
        readwrite: bool,
    },
    /// `type=tmpfs,target=..`
    Tmpfs {
        /// Mount point.
        target: String,
    },
}

/// `RUN` with its flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunInstr {
    /// The command to run.
    pub command: CommandLine,
    /// `--mount` flags.
    pub mounts: Vec<MountSpec>,
    /// `--network=default|none|host`
    pub network: Option<String>,
    /// Heredoc bodies; for a shell-form RUN they are already part of `command`.
    pub heredocs: Vec<Heredoc>,
}

/// `COPY`/`ADD` with its flags (raw values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyInstr {
    /// Source words; a source `<<NAME` refers to the heredoc `NAME`.
    pub sources: Vec<String>,
    /// The destination, raw.
    pub dest: String,
    /// `--chown` value, raw.
    pub chown: Option<String>,
    /// `--chmod` value, raw (octal).
    pub chmod: Option<String>,
    /// `--from=stage|index|image`
    pub from: Option<String>,
    /// `--link` (accepted; behaves like a plain copy)
    pub link: bool,
    /// `--keep-git-dir`, `--checksum` and other flags are rejected; heredoc bodies:
    pub heredocs: Vec<Heredoc>,
}

/// `HEALTHCHECK`; durations in nanoseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthcheckInstr {
    /// `HEALTHCHECK NONE`: disable any inherited check.
    None,
    /// `HEALTHCHECK [opts] CMD ...`
    Cmd {
        /// The check command.
        test: CommandLine,
        /// `--interval`
        interval: Option<i64>,
        /// `--timeout`
        timeout: Option<i64>,
        /// `--start-period`
        start_period: Option<i64>,
        /// `--start-interval`
        start_interval: Option<i64>,
        /// `--retries`
        retries: Option<i64>,
    },
}

/// Every Dockerfile instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {
    /// `FROM` (only seen through [`parse_line`]; [`parse`] turns it into a [`Stage`]).
    From(FromInstr),
    /// `RUN`
    Run(RunInstr),
    /// `CMD`
    Cmd(CommandLine),
    /// `ENTRYPOINT`
    Entrypoint(CommandLine),
    /// Key/value pairs, raw.
    Env(Vec<(String, String)>),
    /// `ARG`
    Arg(Vec<ArgDecl>),
    /// Key/value pairs, raw.
    Label(Vec<(String, String)>),
    /// Port words, raw.
    Expose(Vec<String>),
    /// `USER`, raw.
    User(String),
    /// `WORKDIR`, raw.
    Workdir(String),
    /// Paths, raw.
    Volume(Vec<String>),
    /// `STOPSIGNAL`, raw.
    StopSignal(String),
    /// `HEALTHCHECK`
    Healthcheck(HealthcheckInstr),
    /// The trigger text (as stored in the image's `OnBuild`) and its parsed form.
    OnBuild(String, Box<Instruction>),
    /// `SHELL` (JSON form only).
    Shell(Vec<String>),
    /// `MAINTAINER`, raw.
    Maintainer(String),
    /// `COPY`
    Copy(CopyInstr),
    /// `ADD`
    Add(CopyInstr),
}

/// Parses a whole Dockerfile.
pub fn parse(src: &str) -> Result<Dockerfile, ParseError> {
    let (directives, lines) = lexer::split(src)?;
    let escape = directives.escape;
    let mut global_args = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    for l in lines {
        let instruction = instructions::parse_instruction(&l.text, &l.heredocs, l.line, escape)?;
        match instruction {
            Instruction::From(from) => {
                if let Some(a) = &from.alias {
                    if stages.iter().any(|s| s.from.alias.as_ref() == Some(a)) {
                        return Err(ParseError::Syntax { line: l.line, message: format!("duplicate stage name {a:?}") });
                    }
                }
                stages.push(Stage {
                index: stages.len(),
                from,
                line: l.line,
                original: l.text,
                instructions: Vec::new(),
                })
            }
            other => match stages.last_mut() {
                Some(stage) => stage.instructions.push(Line { line: l.line, original: l.text, instruction: other }),
                None => match other {
                    Instruction::Arg(args) => global_args.extend(args),
                    _ => {
                        return Err(ParseError::Syntax {
                            line: l.line,
                            message: "no build stage in current context: the first instruction must be FROM (or ARG)".into(),
                        })
                    }
                },
            },
        }
    }
    if stages.is_empty() {
        return Err(ParseError::Syntax {
            line: 1,
            message: "the dockerfile has no FROM instruction".into(),
        });
    }
    Ok(Dockerfile {
        directives,
        global_args,
        stages,
    })
}

/// Parses one instruction line (as used for `ONBUILD` triggers taken from a base image).
pub fn parse_line(text: &str, escape: char) -> Result<Instruction, ParseError> {
    instructions::parse_instruction(text.trim(), &[], 1, escape)
}

impl Dockerfile {
    /// Finds a stage by name (case-insensitive) or by index.
    pub fn stage_by_name(&self, name: &str) -> Option<&Stage> {
        let lower = name.to_ascii_lowercase();
        self.stages
            .iter()
            .find(|s| s.from.alias.as_deref() == Some(lower.as_str()))
            .or_else(|| name.parse::<usize>().ok().and_then(|i| self.stages.get(i)))
    }
}
